#!/usr/bin/env bash
# README command 1: install, build, start ethershelf on the default lab config inside a lab
# namespace, prove it serves I/O (aoeping, aoecfg, and the real Linux initiator writing and
# verifying data), print what happened and clean up. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, raw sockets, qemu)"; exit 2; }
./deploy/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --locked -q -p ethershelf
BIN=$PWD/target/release/ethershelf
CONFIG=$PWD/config/examples/lab.yaml
WORK=/tmp/ethershelf-demo
SHELF_NS=esdemo-shelf HOST_NS=esdemo-host
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$SHELF_NS" 2>/dev/null || true
  ip netns del "$HOST_NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup
rm -rf "$WORK"; mkdir -p "$WORK"
for i in 0 1 2 3 4; do truncate -s 256M "$WORK/disk$i.img"; done

echo "== lab: namespaces $SHELF_NS and $HOST_NS joined by veth sh0 <-> hb0 (MTU 9000)"
ip netns add "$SHELF_NS"; ip netns add "$HOST_NS"
ip link add sh0 type veth peer name hb0
ip link set sh0 netns "$SHELF_NS"; ip link set hb0 netns "$HOST_NS"
ip -n "$SHELF_NS" link set sh0 mtu 9000 up; ip -n "$HOST_NS" link set hb0 mtu 9000 up

echo "== checking and starting: ethershelf serve -c $CONFIG"
"$BIN" check -c "$CONFIG"
ip netns exec "$SHELF_NS" "$BIN" serve -c "$CONFIG" 2>"$WORK/shelf.log" &
pid=$!
for _ in $(seq 50); do grep -q " serving " "$WORK/shelf.log" && break; sleep 0.1; done
grep -q " serving " "$WORK/shelf.log" || { cat "$WORK/shelf.log"; echo "FAILED: shelf did not start"; exit 1; }

h() { ip netns exec "$HOST_NS" timeout 10 "$@"; }
echo "== aoeping -I 1 0 hb0"
h aoeping -I -s 5 1 0 hb0 | tee "$WORK/identify.txt"
echo "== aoeping -S return_status 1 0 hb0"
h aoeping -S return_status -s 5 1 0 hb0 | tee "$WORK/smart.txt"
echo "== aoecfg: set and read the config string"
h aoecfg -c fset -s "demo@$(hostname)" -t 1 1 0 hb0 | tee "$WORK/cfg.txt"
h aoecfg -c read -t 1 1 0 hb0
ctl() { "$BIN" ctl -c "$CONFIG" "$@"; }
echo "== the RAID-10 LUN: ethershelf ctl list -l"
ctl list -l
echo "== fail member 0.1 (ethershelf ctl fail 0.1): the spare takes over and rebuilds"
ctl fail 0.1
for _ in $(seq 300); do ctl list -l | grep -q "raid10 normal" && break; sleep 0.2; done
ctl list -l | tee "$WORK/raid.txt"
ctl iostats
grep " rebuild finished" "$WORK/shelf.log" | sed 's/^.*rebuild finished/rebuild finished:/' | tee "$WORK/rebuild.txt"
kill "$pid"; wait "$pid" || true; pid=""
grep -q "raid10 normal" "$WORK/raid.txt" || { echo "FAILED: the array did not return to normal"; exit 1; }
grep -q "model: ethershelf" "$WORK/identify.txt" || { echo "FAILED: identify"; exit 1; }
grep -q "LBA Mid: 0x4f" "$WORK/smart.txt" || { echo "FAILED: SMART status"; exit 1; }

echo "== the real Linux initiator (aoe.ko in qemu) writes and verifies 128 MiB through the shelf"
VM=./deploy/vm
"$VM/initiator.sh" --accel tcg --mtu 9000 --fio-job "$VM/jobs/verify.fio" --out "$WORK/ki" \
    -- "$BIN" serve -c "$CONFIG" --interface '{IFACE}' > "$WORK/ki.log" 2>&1 \
    || { tail -40 "$WORK/ki.log"; echo "FAILED: kernel initiator verify"; exit 1; }
sed -n '/^fio /,/^$/p' "$WORK/ki/summary.txt"
ki="kernel initiator verify: PASSED ($(grep -o 'payload=[0-9]*' "$WORK/ki/summary.txt" | head -1))"

cat <<SUMMARY

==================== ethershelf demo: SUCCESS ====================
 shelf e1.0: a RAID-10 array over 4 disk files ($WORK/disk0-3.img) with spare disk4.img,
             served from namespace $SHELF_NS on sh0 (MTU 9000)
 aoeping identify:  $(grep -E '^model' "$WORK/identify.txt")
 aoeping SMART:     healthy (LBA Mid 0x4f / High 0xc2)
 aoecfg:            config string set to "$(cat "$WORK/cfg.txt" | tr -d '\n')"
 RAID-10:           member 0.1 failed on purpose, spare 1.4 rebuilt it, state normal again
                    ($(cat "$WORK/rebuild.txt" | grep -o 'rate_mib_s="[0-9.]*"' | head -1))
 $ki
 logs and results:  $WORK
==================================================================
SUMMARY
