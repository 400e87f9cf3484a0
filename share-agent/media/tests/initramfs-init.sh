#!/bin/busybox sh
# /init of the boot test's initramfs: report the kernel cmdline and the parameter image
# on the serial console, then power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo
echo "VMEDIA-RAMDISK-UP"
echo "VMEDIA-CMDLINE $(cat /proc/cmdline)"
for m in fat vfat nls_cp437 nls_ascii nls_utf8 floppy virtio_ring virtio virtio_pci_modern_dev \
         virtio_pci_legacy_dev virtio_pci virtio_blk; do
    [ -f /lib/mods/$m.ko ] && insmod /lib/mods/$m.ko 2>/dev/null
done
# Give the block drivers a moment to probe; the floppy driver in particular answers its
# first reads with errors under TCG.
for i in 1 2 3 4 5 6 7 8 9 10; do
    [ -b /dev/fd0 ] || [ -b /dev/vda ] && break
    sleep 0.3
done
sleep 1
mkdir -p /mnt
for d in /dev/fd0 /dev/vda /dev/vdb; do
    [ -b $d ] || continue
    for try in 1 2 3 4 5; do
        mount -t vfat -o ro $d /mnt 2>/dev/null && break
        sleep 0.5
    done
    if grep -q ' /mnt ' /proc/mounts; then
        text=$(cat /mnt/parameters.txt)
        umount /mnt
        echo "VMEDIA-LABEL $d $(dd if=$d bs=1 skip=43 count=11 2>/dev/null)"
        echo "VMEDIA-PARAMS-BEGIN $d"
        echo "$text"
        echo "VMEDIA-PARAMS-END $d"
    fi
done
# The device found by label (IPA does the same with lsblk); it must be the whole disk.
# busybox findfs scans /proc/partitions, which has no floppies.
echo "VMEDIA-FINDFS $(findfs LABEL=ir-vfd-dev 2>&1)"
echo "VMEDIA-RAMDISK-DONE"
poweroff -f
