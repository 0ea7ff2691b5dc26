# shellcheck shell=sh
# The reader VM of deploy/cluster/sanboot.sh (busybox sh, deploy/vm/guest/lib.sh loaded): an
# ordinary initiator that reads, through the shelf, the marker the diskless VM wrote into the
# root file system on e1.0 (partition 2), and runs a small verify job beside it.
fail() {
	ev fail "$*"
	exit 1
}
wait_block /dev/etherd/e1.0p2 30 || fail "no partition 2 on e1.0"
mkdir -p /mnt
mount -t ext2 -o ro /dev/etherd/e1.0p2 /mnt || fail "cannot mount e1.0p2"
[ -r /mnt/marker ] || fail "no marker in the LUN's root file system"
ev marker_read "$(cat /mnt/marker)"
umount /mnt
verify_job /tmp/tail.fio "$BDEV" tail randwrite 4k 240m 4m
run_fio /tmp/tail.fio || fail "fio on the LUN's free tail failed"
exit 0
