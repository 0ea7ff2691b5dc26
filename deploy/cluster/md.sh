#!/usr/bin/env bash
# deploy/cluster/md.sh: a whole shelf lost behind Linux md (the cluster guide's scenario 4).
#
# Two shelves (two ethershelf processes, shelf numbers 1 and 2, each in a namespace of its
# own, one 256 MiB file LUN each) on one segment with the initiator VM (aoe.ko, mdadm). The
# guest (deploy/cluster/guest/md.sh) builds md RAID1 with a write-intent bitmap over e1.0 and
# e2.0 and runs fio verify; this script kills shelf 2 (SIGKILL) during the writes and keeps
# it down; md degrades and fio goes on. Once the guest asks, shelf 2 starts again: the guest
# re-adds e2.0 (`mdadm --re-add`: only the chunks the bitmap marked are resynced), md's
# check finds no mismatch, and all data verifies through md and from each shelf alone.
#
# Usage: deploy/cluster/md.sh [--out DIR] [--keep]
#   --out DIR  results (default: a new directory under /var/tmp; removed on success
#              unless --keep)
# Prints what was injected, what fio saw, the resync size and time. Exit status 0 when every
# check held. Needs root, qemu-system-x86, and a built ethershelf (cargo build --release;
# or ETHERSHELF_BIN=...). Everything runs in namespaces this script makes and removes.
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/cluster/lib.sh
. deploy/cluster/lib.sh
cl_init md 18 "$@"
harness_pid=
finish() {
  [ -z "$harness_pid" ] || kill -TERM "$harness_pid" 2>/dev/null
  cl_cleanup
  wait 2>/dev/null
}
trap finish EXIT
trap 'exit 130' INT TERM

cl_segment 1 1500
for s in 1 2; do
  cl_shelf_ns "$s" 1500
  cl_shelf_config "$s" "$OUT/shelf$s" "$OUT/shelf$s/lun0.img" 256MiB
  cl_shelf_start "$s" "$OUT/shelf$s"
done
sleep 1

cl_say "the initiator VM: md RAID1 over e1.0 and e2.0, fio verify"
deploy/vm/initiator.sh --accel tcg --settle 1 --wait 60 --shelf 1 --slot 0 \
  --aoe-params "aoe_deadsecs=15" --guest-tools mdadm --guest-script deploy/cluster/guest/md.sh \
  --fio-job deploy/vm/jobs/quick.fio --fio-timeout 1500 --timeout 1800 --out "$OUT/vm" \
  -- deploy/cluster/uplink.sh "$CL_NS" br0 '{IFACES}' '{MTU}' >"$OUT/vm.log" 2>&1 &
harness_pid=$!

cl_wait_event "$OUT/vm" md_writing 300 "$harness_pid" || { tail -n 30 "$OUT/vm.log"; cl_fail "the guest never started writing to md"; }
sleep 10
cl_shelf_kill 2
killed_at=$SECONDS
cl_wait_event "$OUT/vm" want_shelf2 900 "$harness_pid" || { tail -n 30 "$OUT/vm.log"; cl_fail "the guest never asked for shelf 2 back"; }
cl_say "shelf 2 was down for $((SECONDS - killed_at)) s; starting it again"
cl_shelf_start 2 "$OUT/shelf2"
wait "$harness_pid"
rc=$?
harness_pid=
cat "$OUT/vm/summary.txt" 2>/dev/null
echo "--- the guest's steps"
grep -a '^ESVM ev' "$OUT/vm/serial1.log" | tr -d '\r' | cut -d' ' -f3-
for a in bitmap_before_readd mdstat_degraded mdstat_resynced; do
  [ -f "$OUT/vm/attach-$a.txt" ] && { echo "--- $a"; cat "$OUT/vm/attach-$a.txt"; }
done
echo "--- fio errors per run (A: writes while shelf 2 died; B: writes while degraded; V*: verify)"
for f in "$OUT"/vm/fio.json "$OUT"/vm/attach-fio-*.txt; do
  [ -f "$f" ] || continue
  python3 - "$f" <<'EOF'
import json, os, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.find("{"):])
for j in doc["jobs"]:
    mib = (j["read"]["io_bytes"] + j["write"]["io_bytes"]) / 1048576
    print("%-24s %-4s %6.1f MiB  errors %d" % (os.path.basename(sys.argv[1]), j["jobname"], mib, j.get("total_err", 0) + j.get("error", 0)))
EOF
done
if ((rc != 0)); then
  KEEP=1
  cl_fail "the scenario failed (results in $OUT)"
fi
grep -a 'md_resynced' "$OUT/vm/serial1.log" | tr -d '\r' | sed 's/^ESVM ev /resync: /'
cl_say "PASSED: shelf 2 lost and back, md resynced from its bitmap, mismatch_cnt 0, all data verified on both shelves"
[ -n "$KEEP" ] && cl_say "results in $OUT" || rm -rf "$OUT"
