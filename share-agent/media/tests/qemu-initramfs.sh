#!/usr/bin/env bash
# Build the boot test's initramfs: static busybox, our /init and the kernel modules from
# KERNEL_DIR/mods (see qemu-kernel.sh), as a gzip'd newc cpio at OUT.
set -euo pipefail
kdir=${1:?usage: qemu-initramfs.sh KERNEL_DIR OUT}
out=${2:?usage: qemu-initramfs.sh KERNEL_DIR OUT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=$(command -v busybox)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,mnt,lib/mods}
cp "$busybox" "$root/bin/busybox"
cp "$here/initramfs-init.sh" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"
cp "$kdir"/mods/*.ko "$root/lib/mods/" 2>/dev/null || true
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
