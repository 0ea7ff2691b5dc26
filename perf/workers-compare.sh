#!/usr/bin/env bash
# One worker against one worker per queue, alternately (A B A B ...), on a veth link with two
# receive queues (MTU 9000, AF_XDP), the initiator's two job threads steered to one queue
# each (XPS) and pinned to CPUs 0 and 1; the shelf may use every CPU (it shares them with the
# initiator on a small machine). Page-cache-warm file, same aoebench job for both.
# Prints the median IOPS, MiB/s and target CPU per I/O of each, and writes
# perf/results/workers-<date>.md.
# Usage: perf/workers-compare.sh [ROUNDS=3] [RUNTIME_S=5]   (run as root; about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} runtime=${2:-5}
cargo build --release --locked -q -p ethershelf -p ethershelf-bench
bin=$PWD/target/release
id=$$
s_ns=eswk${id}s h_ns=eswk${id}h
work=$(mktemp -d /tmp/es-workers.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip netns del "$s_ns" 2>/dev/null || true
  ip netns del "$h_ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$s_ns"; ip netns add "$h_ns"
ip link add wk${id}s numrxqueues 2 numtxqueues 2 type veth peer name wk${id}h numrxqueues 2 numtxqueues 2
ip link set wk${id}s netns "$s_ns"; ip link set wk${id}h netns "$h_ns"
ip -n "$s_ns" link set wk${id}s mtu 9000 up; ip -n "$h_ns" link set wk${id}h mtu 9000 up
ip netns exec "$h_ns" sh -c "echo 1 > /sys/class/net/wk${id}h/queues/tx-0/xps_cpus; echo 2 > /sys/class/net/wk${id}h/queues/tx-1/xps_cpus"
dd if=/dev/urandom of="$work/disk.img" bs=1M count=512 status=none
cat "$work/disk.img" > /dev/null

# case: "rw bs iodepth"
cases=("randread 4k 32" "read 64k 8")
results="$work/results.txt"
: > "$results"
for c in "${cases[@]}"; do
  read -r rw bs qd <<< "$c"
  for r in $(seq "$rounds"); do
    for workers in 1 2; do
      cat > "$work/shelf.yaml" <<YAML
shelf: 7
state_dir: $work/state
admin: { socket: $work/admin.sock }
workers: $workers
metrics: { listen: off }
ports:
  - { interface: wk${id}s, mode: xdp }
luns:
  - { slot: 1, file: $work/disk.img, direct: false, write_cache: writeback }
YAML
      ip netns exec "$s_ns" "$bin/ethershelf" serve -c "$work/shelf.yaml" > "$work/shelf.log" 2>&1 &
      pid=$!
      for _ in $(seq 50); do grep -q serving "$work/shelf.log" && break; sleep 0.1; done
      grep -q serving "$work/shelf.log" || { cat "$work/shelf.log"; exit 1; }
      t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
      ip netns exec "$h_ns" timeout 60 "$bin/aoebench" run --target 7.1 --if wk${id}h --rw "$rw" \
        --bs "$bs" --iodepth "$qd" --numjobs 2 --cpus 0,1 --runtime "${runtime}s" --size 512m \
        --output-format json > "$work/job.json"
      t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
      kill -TERM "$pid"; wait "$pid" || true; pid=
      python3 - "$rw $bs QD$qd x2" "$workers" "$((t1 - t0))" "$work/job.json" >> "$results" <<'PY'
import json, sys
case, workers, ticks, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
job = json.load(open(path))["jobs"][0]
ios = sum(job[k]["ios"] for k in ("read", "write") if isinstance(job.get(k), dict))
iops = sum(job[k]["iops"] for k in ("read", "write") if isinstance(job.get(k), dict))
mib = sum(job[k]["mib_per_s"] for k in ("read", "write") if isinstance(job.get(k), dict))
assert job["errors"] == 0, job
print(f"{case}\t{workers}\t{iops:.0f}\t{mib:.0f}\t{ticks * 1e4 / max(ios, 1):.1f}")
PY
      tail -1 "$results"
    done
  done
done
out=perf/results/workers-$(date -u +%Y%m%dT%H%M%SZ).md
python3 - "$results" "$(git rev-parse --short HEAD)" "$(nproc)" > "$out" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"git {sys.argv[2]}, {sys.argv[3]} CPUs, veth with 2 queues, MTU 9000, AF_XDP, page cache")
print()
print("| case | workers | median IOPS (all) | MiB/s | target CPU us per I/O | x 1 worker |")
print("|---|---|---|---|---|---|")
cases = list(dict.fromkeys(r[0] for r in rows))
for case in cases:
    base = None
    for w in ("1", "2"):
        sel = [r for r in rows if r[0] == case and r[1] == w]
        iops = statistics.median(float(r[2]) for r in sel)
        mib = statistics.median(float(r[3]) for r in sel)
        cpu = statistics.median(float(r[4]) for r in sel)
        base = base or iops
        every = ", ".join(f"{float(r[2]):.0f}" for r in sel)
        print(f"| {case} | {w} | {iops:.0f} ({every}) | {mib:.0f} | {cpu:.1f} | {iops / base:.2f} |")
PY
cat "$out"
echo "results: $out"
