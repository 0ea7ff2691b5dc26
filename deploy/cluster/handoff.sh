#!/usr/bin/env bash
# deploy/cluster/handoff.sh: VM handoff between hosts, the storage side of live migration
# (the cluster guide's scenario 5), fenced with the LUN's config string.
#
# One shelf (shelf 1, a 256 MiB file LUN e1.0) and two initiator VMs (host A and host B,
# aoe.ko and aoecfg) on one segment. The guests (deploy/cluster/guest/handoff.sh) run the
# claim/release protocol: A claims (config string `set` on an empty string), writes
# crc32c-checkable data with fio and flushes; B's claim is refused (error 4) while A owns the
# LUN; A releases (`fset` to empty); B claims, verifies all of A's data, writes more; A's
# later claim is refused.
#
# Usage: deploy/cluster/handoff.sh [--out DIR] [--keep]
# Exit status 0 when both hosts' checks held. Needs root, qemu-system-x86, aoetools (for the
# guests' aoecfg; unpacked from its package if missing) and a built ethershelf.
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/cluster/lib.sh
. deploy/cluster/lib.sh
cl_init handoff 15 "$@"
cl_traps

cl_segment 1 1500
cl_shelf_ns 1 1500
cl_shelf_config 1 "$OUT/shelf1" "$OUT/shelf1/lun0.img" 256MiB
cl_shelf_start 1 "$OUT/shelf1"
sleep 1

for host in a b; do
  id=1
  [ "$host" = b ] && id=2
  cl_say "host $host: initiator VM (--vm-id $id)"
  deploy/vm/initiator.sh --accel tcg --settle 1 --wait 60 --vm-id "$id" \
    --guest-tools aoecfg --guest-script deploy/cluster/guest/handoff.sh \
    --fio-job deploy/vm/jobs/quick.fio --fio-timeout 900 --timeout 1200 --out "$OUT/$host" \
    -- deploy/cluster/uplink.sh "$CL_NS" br0 '{IFACES}' '{MTU}' >"$OUT/$host.log" 2>&1 &
  CL_PIDS+=($!)
done
rc=0
for p in "${CL_PIDS[@]}"; do wait "$p" || rc=1; done
CL_PIDS=()
for host in a b; do
  echo "=== host $host"
  sed -n '1,/^timeline/p' "$OUT/$host/summary.txt" 2>/dev/null | head -n 4
  grep -a '^ESVM ev' "$OUT/$host/serial1.log" | tr -d '\r' | cut -d' ' -f3- | grep -vE '^(init|nics_up|aoe_loaded|poweroff) '
  grep -A8 '^  job ' "$OUT/$host/summary.txt" 2>/dev/null
done
echo "=== the shelf's audit trail of the config string (host A is 52:54:00:e5:01:01, B ...:02:01)"
grep -a "config string" "$OUT/shelf1/shelf.log" | sed 's/^[^ ]* *INFO audit: /  /'
if ((rc != 0)); then
  KEEP=1
  cl_fail "the handoff failed (results in $OUT)"
fi
cl_say "PASSED: A claimed, wrote and released; B was refused while A owned the LUN, then claimed and verified A's data; A's later claim was refused"
[ -n "$KEEP" ] && cl_say "results in $OUT" || rm -rf "$OUT"
