# shellcheck shell=sh
# The guest's half of deploy/cluster/md.sh (busybox sh in the initiator VM, with
# deploy/vm/guest/lib.sh loaded): md RAID1 with a write-intent bitmap over e1.0 (shelf 1) and
# e2.0 (shelf 2). Steps the driver waits for: md_writing (it then kills shelf 2 for good),
# want_shelf2 (it starts shelf 2 again). Exit status 0 when every check held.
E1=/dev/etherd/e1.0
E2=/dev/etherd/e2.0
MD=/dev/md0
SYSMD=/sys/block/md0/md
CHUNK_KIB=1024

fail() {
	ev fail "$*"
	attach mdstat_at_failure cat /proc/mdstat
	attach md_detail_at_failure mdadm --detail $MD
	exit 1
}
state_of() { cat "/sys/block/etherd!$1/state" 2>/dev/null; }
# wait_up NAME SECONDS: until /dev/etherd/NAME is up, asking for it every second.
wait_up() {
	t=0
	until [ -b "/dev/etherd/$1" ] && case "$(state_of "$1")" in up*) true ;; *) false ;; esac; do
		t=$((t + 1))
		[ "$t" -le $(($2 * 2)) ] || return 1
		if [ $((t % 2)) = 0 ]; then
			echo > /dev/etherd/discover
			echo "$1" > /dev/etherd/revalidate 2>/dev/null
		fi
		sleep 0.5
	done
}
# wait_for SECONDS TEST...: until TEST succeeds.
wait_for() {
	limit=$1
	shift
	t=0
	until "$@"; do
		t=$((t + 1))
		[ "$t" -le $((limit * 2)) ] || return 1
		sleep 0.5
	done
}
degraded() { [ "$(cat $SYSMD/degraded)" = 1 ]; }
clean_and_idle() { [ "$(cat $SYSMD/degraded)" = 0 ] && [ "$(cat $SYSMD/sync_action)" = idle ]; }
idle() { [ "$(cat $SYSMD/sync_action)" = idle ]; }
# job NAME RW BS OFFSET SIZE [EXTRA]: a fio job file /tmp/NAME.fio on md0, crc32c-verified.
job() { verify_job "/tmp/$1.fio" $MD "$@"; }

wait_up e2.0 60 || fail "e2.0 (shelf 2) did not come up"
mdadm --create $MD --run --level=1 --raid-devices=2 --metadata=1.2 --bitmap=internal \
	--bitmap-chunk=$CHUNK_KIB --assume-clean $E1 $E2 > /tmp/create.txt 2>&1 ||
	{ attach mdadm_create cat /tmp/create.txt; fail "mdadm --create failed"; }
attach mdstat_created cat /proc/mdstat
size_kib=$(($(cat /sys/block/md0/size) / 2))

# A: random 4 KiB writes over the first 64 MiB, verified as they go and at the end. Shelf 2
# dies during this run: md fails e2.0 when aoe.ko gives it up (aoe_deadsecs) and goes on.
job a randwrite 4k 0 64m verify_backlog=256
ev md_writing
run_fio /tmp/a.fio /tmp/fio.json || fail "fio A (writes while shelf 2 dies) failed"
# B: 16 MiB more at 128 MiB while degraded (md notices a dead member only on I/O).
job b write 256k 128m 16m
run_fio /tmp/b.fio /tmp/fio-b.json || fail "fio B (writes while degraded) failed"
wait_for 120 degraded || fail "md is not degraded after shelf 2 was killed"
attach mdstat_degraded cat /proc/mdstat
ev md_degraded "e2.0 state=$(state_of e2.0)"

# Shelf 2 comes back. md lets go of the failed member, then aoe.ko finds the device again.
mdadm $MD --remove $E2 > /tmp/remove.txt 2>&1 ||
	{ attach mdadm_remove cat /tmp/remove.txt; fail "mdadm --remove e2.0 failed"; }
ev want_shelf2
wait_up e2.0 180 || fail "e2.0 did not come back up (state: $(state_of e2.0))"
ev shelf2_back
mdadm -X $E1 > /tmp/bitmap.txt 2>&1
attach bitmap_before_readd cat /tmp/bitmap.txt
dirty=$(sed -n 's/.*bits (chunks), \([0-9]*\) dirty.*/\1/p' /tmp/bitmap.txt)
[ -n "$dirty" ] || fail "cannot read the bitmap's dirty count"
start=$(uptime_s)
mdadm $MD --re-add $E2 > /tmp/readd.txt 2>&1 ||
	{ attach mdadm_readd cat /tmp/readd.txt; fail "mdadm --re-add e2.0 failed (a full rebuild would be needed)"; }
wait_for 600 clean_and_idle || fail "md did not finish the resync"
end=$(uptime_s)
attach mdstat_resynced cat /proc/mdstat
ev md_resynced "dirty_chunks=$dirty chunk_kib=$CHUNK_KIB resync_kib=$((dirty * CHUNK_KIB)) array_kib=$size_kib seconds=$(echo "$start $end" | awk '{ printf "%.1f", $2 - $1 }')"

# Both legs hold the same data: md compares them block by block.
echo check > $SYSMD/sync_action
wait_for 600 idle || fail "md's check did not finish"
mismatch=$(cat $SYSMD/mismatch_cnt)
[ "$mismatch" = 0 ] || fail "md check: mismatch_cnt=$mismatch"
ev md_checked "mismatch_cnt=0"

# Everything fio wrote verifies through md, and then from shelf 2 alone.
job va randwrite 4k 0 64m verify_only=1
job vb write 256k 128m 16m verify_only=1
run_fio /tmp/va.fio /tmp/fio-va.json || fail "verify of A through md failed"
run_fio /tmp/vb.fio /tmp/fio-vb.json || fail "verify of B through md failed"
mdadm $MD --fail $E1 > /dev/null 2>&1 || fail "mdadm --fail e1.0 failed"
run_fio /tmp/va.fio /tmp/fio-va2.json || fail "verify of A from shelf 2 alone failed"
run_fio /tmp/vb.fio /tmp/fio-vb2.json || fail "verify of B from shelf 2 alone failed"
# And from shelf 1 alone: e1.0 comes back (nothing to resync), e2.0 goes.
mdadm $MD --remove $E1 > /dev/null 2>&1 && mdadm $MD --re-add $E1 > /tmp/readd1.txt 2>&1 ||
	{ attach mdadm_readd1 cat /tmp/readd1.txt; fail "mdadm --re-add e1.0 failed"; }
wait_for 600 clean_and_idle || fail "md did not take e1.0 back"
mdadm $MD --fail $E2 > /dev/null 2>&1 || fail "mdadm --fail e2.0 failed"
run_fio /tmp/va.fio /tmp/fio-va1.json || fail "verify of A from shelf 1 alone failed"
run_fio /tmp/vb.fio /tmp/fio-vb1.json || fail "verify of B from shelf 1 alone failed"
ev verified_on_both "through md, from shelf 2 alone, from shelf 1 alone"
for f in fio-b fio-va fio-vb fio-va2 fio-vb2 fio-va1 fio-vb1; do attach "$f" cat "/tmp/$f.json"; done
attach mdstat_end cat /proc/mdstat
exit 0
