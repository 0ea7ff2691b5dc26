# shellcheck shell=sh
# The diskless VM's half of deploy/cluster/sanboot.sh (busybox sh, deploy/vm/guest/lib.sh
# loaded). This system was booted by iPXE from the LUN e1.0 (SYSLINUX, kernel and initramfs on
# its first partition); here it checks that it has no disk of its own, finds its root file
# system on e1.0 (partition 2) through aoe.ko, and writes the marker the driver put on the
# kernel command line (esvm.marker=...) into it. The driver reads it back through the shelf.
fail() {
	ev fail "$*"
	exit 1
}
attach cmdline cat /proc/cmdline
marker=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^esvm\.marker=//p')
[ -n "$marker" ] || fail "no esvm.marker= on the kernel command line (not booted from the LUN's SYSLINUX?)"
grep -q "BOOT_IMAGE=/vmlinuz" /proc/cmdline || fail "the kernel was not loaded by the LUN's SYSLINUX"
disks=$(ls /sys/block | grep -v -e '^etherd' -e '^loop' -e '^ram' -e '^md' | tr '\n' ' ')
[ -z "$disks" ] || fail "this VM has disks of its own: $disks"
ev no_local_disk "block devices: $(ls /sys/block | tr '\n' ' ')"
wait_block /dev/etherd/e1.0p2 30 || fail "no partition 2 on e1.0"
mkdir -p /newroot
mount -t ext2 /dev/etherd/e1.0p2 /newroot || fail "cannot mount e1.0p2 (the root file system)"
[ -r /newroot/ethershelf-root ] || fail "e1.0p2 is not the LUN's root file system"
ev root_on_lun "$(cat /newroot/ethershelf-root)"
echo "$marker" > /newroot/marker || fail "cannot write the marker"
umount /newroot || fail "cannot unmount the root file system"
sync
ev marker_written "$marker"
# Some I/O of the booted system through aoe.ko, verified, in the LUN's free tail.
verify_job /tmp/tail.fio "$BDEV" tail randwrite 4k 224m 4m
run_fio /tmp/tail.fio || fail "fio on the LUN's free tail failed"
exit 0
