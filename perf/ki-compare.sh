#!/usr/bin/env bash
# Side by side through the real Linux initiator: ethershelf and vblade alternately (A B A B),
# same VM harness (deploy/vm/initiator.sh), same backing file (1 GiB of random data), same fio
# job. The VM runs under software emulation (TCG), so these numbers say more about the guest
# than the target; the aoebench harness (bench/) is for target performance. Writes
# perf/results/ki-<date>.json.
# Usage: perf/ki-compare.sh [PAIRS=2] [MTU=9000] [JOB=default.fio]   (run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-2} mtu=${2:-9000} job=${3:-default.fio}
VM=deploy/vm
command -v vblade >/dev/null || { echo "install vblade (deploy/install-deps.sh)"; exit 2; }
cargo build --release --locked -q -p ethershelf
work=$(mktemp -d /tmp/es-ki-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
dd if=/dev/urandom of="$work/disk.img" bs=1M count=1024 status=none
out=perf/results/ki-$(date -u +%Y%m%dT%H%M%SZ).json
echo "[" > "$out"
first=1
for i in $(seq "$pairs"); do
  for target in ethershelf vblade; do
    if [ $target = ethershelf ]; then
      cmd=("$PWD/target/release/ethershelf" export --state-dir "$work/state" 1 0 '{IFACE}' "$work/disk.img")
    else
      cmd=(vblade 1 0 '{IFACE}' "$work/disk.img")
    fi
    "$VM/initiator.sh" --accel tcg --mtu "$mtu" --fio-job "$VM/jobs/$job" --out "$work/$target-$i" -- "${cmd[@]}" > "$work/$target-$i.log" 2>&1 \
      || { tail -20 "$work/$target-$i.log"; echo "run failed: $target pair $i"; exit 1; }
    echo "== $target (pair $i)"
    sed -n '/^fio /,/^$/p' "$work/$target-$i/summary.txt" | sed '1d;$d'
    [ $first = 1 ] || echo "," >> "$out"; first=0
    printf '{"target":"%s","pair":%d,"mtu":%d,"job":"%s","git":"%s","summary":' "$target" "$i" "$mtu" "$job" "$(git rev-parse --short HEAD)" >> "$out"
    cat "$work/$target-$i/summary.json" >> "$out"
    echo "}" >> "$out"
  done
done
echo "]" >> "$out"
echo "results: $out"
