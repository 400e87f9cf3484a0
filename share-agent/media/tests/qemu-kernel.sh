#!/usr/bin/env bash
# Fetch a Debian amd64 kernel and the modules the boot test's initramfs loads into DIR
# (idempotent, safe to run concurrently). Result: DIR/vmlinuz and DIR/mods/*.ko.
# Needs apt-get (Debian) and network access to the Debian mirror on first use.
set -euo pipefail
dir=${1:?usage: qemu-kernel.sh DIR}
mkdir -p "$dir"
[[ -s $dir/vmlinuz && -d $dir/mods ]] && exit 0
exec 9>"$dir/.lock"
flock 9
[[ -s $dir/vmlinuz && -d $dir/mods ]] && exit 0

# The versioned package the linux-image-amd64 meta package points at.
pkg_of() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(pkg_of || true)
if [[ -z $pkg ]]; then
    apt-get update -qq
    pkg=$(pkg_of)
fi
[[ -n $pkg ]] || { echo "qemu-kernel: cannot find the kernel package behind linux-image-amd64" >&2; exit 1; }

work=$(mktemp -d "$dir/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1); then
    # Stale package lists: refresh, and ask again which kernel the meta package wants.
    apt-get update -qq
    pkg=$(pkg_of)
    (cd "$work" && apt-get download "$pkg" >/dev/null)
fi
dpkg-deb -x "$work"/*.deb "$work/x"
rm -rf "$dir/mods"
mkdir -p "$dir/mods"
for m in fat vfat nls_cp437 nls_ascii nls_utf8 floppy virtio_ring virtio virtio_pci_modern_dev \
         virtio_pci_legacy_dev virtio_pci virtio_blk; do
    f=$(find "$work/x/lib/modules" -name "$m.ko" -print -quit)
    if [[ -z $f ]]; then
        # Built into the kernel: nothing to load.
        continue
    fi
    cp "$f" "$dir/mods/"
done
cp "$work"/x/boot/vmlinuz-* "$dir/vmlinuz.tmp"
mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
echo "$pkg" > "$dir/package"
