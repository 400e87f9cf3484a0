#!/usr/bin/env bash
# Installs what the demo and the test suite need on a fresh Debian machine, then builds.
# Idempotent: a second run only checks. Needs root (or sudo) for apt-get when a package is missing.
set -euo pipefail

# Debian packages: real tools the tests use as oracles and peers.
#   mtools dosfstools      read back FAT parameter images (mdir, mtype, mlabel, fsck.fat)
#   xorriso                ISO oracle (-report_el_torito)
#   isolinux syslinux-common grub-efi-amd64-bin grub-common   BIOS and UEFI boot loaders for boot ISOs
#   qemu-system-x86 ovmf busybox-static cpio                   QEMU boot tests (SeaBIOS and OVMF)
#   samba smbclient        the real-share fidelity test
#   postgresql             the PostgreSQL store backend tests
#   python3-venv           compatibility tests with python-scciclient and grpcio
#   ipmitool               Ironic 35.1 (the fidelity test peer) runs it against irmc-sim's IPMI; the
#                          irmc-sim tests drive the simulator with it (-I lanplus, -C 3 and -C 17);
#                          the irmc crate's IPMI client is also tested against pyghmi's BMC (PyPI)
#   openipmi               ipmi_sim, a BMC simulator nobody here wrote: a peer of the irmc crate's IPMI client
#   prometheus             its promtool lints the services' /metrics expositions (`promtool check metrics`)
#   chromium chromium-driver  the dashboard's browser test (headless Chromium driven over WebDriver)
#   tgt libiscsi-bin       iSCSI peers: a real target (tgtd) for the initiator, libiscsi's tools for the simulator's target
#   cloud-init             its OpenStack config-drive reader reads back the config drives we build
#   gdisk fdisk            sgdisk/sfdisk check partition tables written to disks
#   nfs-ganesha nfs-ganesha-vfs rpcbind   a real NFS server for the share tests
#   time                   GNU time measures the peak memory of a process facing a hostile peer
#   qemu-utils parted      stock ironic-python-agent runs qemu-img and parted when it writes a disk
PKGS=(mtools dosfstools xorriso isolinux syslinux-common grub-efi-amd64-bin grub-common
      qemu-system-x86 ovmf busybox-static cpio samba smbclient postgresql python3-venv
      ipmitool openipmi prometheus ca-certificates curl chromium chromium-driver
      tgt libiscsi-bin cloud-init gdisk fdisk nfs-ganesha nfs-ganesha-vfs rpcbind time qemu-utils parted)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
