# shellcheck shell=sh
# The guests' half of deploy/cluster/handoff.sh (busybox sh in each initiator VM, with
# deploy/vm/guest/lib.sh loaded): the storage side of a VM's live migration from host A to
# host B, fenced with the LUN's config string (the claim/release protocol of the cluster
# guide). The role comes from the NIC's MAC (harness --vm-id 1: host A, 2: host B).
#   claim:   aoecfg -c set -s HOSTID   succeeds only while the string is empty (else the shelf
#            answers error 4 and aoecfg prints *badcfg*)
#   release: aoecfg -c fset -s ""      (only the owner does this, after its last flush)
# Host A claims, writes checkable data (fio crc32c), flushes, holds the claim for a while,
# releases, then finds its next claim refused. Host B waits for A's claim, finds its own
# claim refused, waits for the release, claims, verifies all of A's data, writes more.
SHELF=1
SLOT=0
NIC=eth0

fail() {
	ev fail "$*"
	exit 1
}
owner() { aoecfg -c read -t 1 $SHELF $SLOT $NIC 2>&1 | head -n 1; }
# claim ID: prints what the shelf answered (ID when the claim held, *badcfg* when refused).
claim() { aoecfg -c set -s "$1" -t 1 $SHELF $SLOT $NIC 2>&1 | head -n 1; }
release() { aoecfg -c fset -s "" -t 1 $SHELF $SLOT $NIC > /dev/null 2>&1; }
# wait_owner ID SECONDS: until the config string reads ID ("" for none).
wait_owner() {
	t=0
	until [ "$(owner)" = "$1" ]; do
		t=$((t + 1))
		[ "$t" -le $(($2 * 2)) ] || return 1
		sleep 0.5
	done
}
# job NAME RW OFFSET SIZE [EXTRA]: a crc32c-verified 4 KiB fio job on the LUN.
job() { verify_job "/tmp/$1.fio" "$BDEV" "$1" "$2" 4k "$3" "$4" "${5:-}"; }

case "$(cat /sys/class/net/$NIC/address)" in
*:e5:01:01) role=A id=hostA-vm17 other=hostB-vm17 ;;
*:e5:02:01) role=B id=hostB-vm17 other=hostA-vm17 ;;
*) fail "run with --vm-id 1 (host A) or 2 (host B)" ;;
esac
ev role "$role id=$id"

if [ "$role" = A ]; then
	wait_owner "" 30 || fail "the LUN is not free at the start (owner: $(owner))"
	got=$(claim "$id")
	[ "$got" = "$id" ] || fail "host A's claim on a free LUN failed: '$got'"
	ev a_claimed
	job a randwrite 0 32m
	run_fio /tmp/a.fio /tmp/fio.json || fail "host A's writes failed"
	ev a_wrote "32 MiB of crc32c-headed blocks, flushed"
	# Hold the claim (the VM is still running on A) while B tries and fails.
	sleep 20
	[ "$(owner)" = "$id" ] || fail "host A lost its claim while holding it (owner: $(owner))"
	release
	ev a_released
	wait_owner "$other" 120 || fail "host B never claimed the LUN (owner: $(owner))"
	got=$(claim "$id")
	[ "$got" = "*badcfg*" ] || fail "host A's later claim was not refused: '$got'"
	[ "$(owner)" = "$other" ] || fail "host A's refused claim changed the owner: $(owner)"
	ev a_refused_later "aoecfg: $got (error 4)"
	exit 0
fi

wait_owner "$other" 120 || fail "host A never claimed the LUN (owner: $(owner))"
got=$(claim "$id")
[ "$got" = "*badcfg*" ] || fail "host B's claim while A owns the LUN was not refused: '$got'"
[ "$(owner)" = "$other" ] || fail "host B's refused claim changed the owner: $(owner)"
ev b_refused "aoecfg: $got (error 4)"
wait_owner "" 300 || fail "host A never released the LUN (owner: $(owner))"
got=$(claim "$id")
[ "$got" = "$id" ] || fail "host B's claim after the release failed: '$got'"
ev b_claimed
# Everything A wrote, then B's own writes beside it, then A's data once more.
job va randwrite 0 32m verify_only=1
job b randwrite 64m 16m
run_fio /tmp/va.fio /tmp/fio.json || fail "host B could not verify host A's data"
ev b_verified_a
run_fio /tmp/b.fio /tmp/fio-b.json || fail "host B's writes failed"
run_fio /tmp/va.fio /tmp/fio-va2.json || fail "host A's data changed under host B's writes"
ev b_wrote "16 MiB more, A's 32 MiB verified before and after"
attach fio-b cat /tmp/fio-b.json
attach fio-va2 cat /tmp/fio-va2.json
exit 0
