#!/usr/bin/env bash
# deploy/cluster/shelf.sh: one shelf behind a misbehaving network, as the TARGET of
# deploy/vm/initiator.sh (it runs inside the namespace the harness made, beside the VM's taps).
#
# Usage (inside the harness's namespace; the placeholders are the harness's):
#   deploy/cluster/shelf.sh --bin ETHERSHELF --aoebench AOEBENCH --ifaces {IFACES} --mtu {MTU}
#       --out {OUT} [--shelf N] [--disk FILE] [--seconds S] [--scrape S]
#       [--relay-all 'RELAY OPTIONS'] [--relay-1 'RELAY OPTIONS' ...]
#       [--restart-after S] [--down S] [--cut-path I --cut-after S --cut-for S]
#
# For every tap vmtapI of IFACES it makes a veth pair rlI (relay side) / spI (shelf port),
# starts `aoebench relay --a vmtapI --b rlI` with the options given for every path
# (--relay-all) plus those for path I (--relay-I), and serves one file LUN (slot 0, 1 GiB,
# made if missing, write-through) on sp0, sp1, ... with metrics on 127.0.0.1:9478 of the
# namespace. Every --scrape seconds (default 1) the per-path frame counters are appended to
# OUT/paths.tsv (seconds since start, port, rx frames, tx frames).
#   --restart-after S  S seconds after the guest's fio started (OUT/events.tsv), the shelf is
#                      killed with SIGKILL, stays down --down seconds (default 3), then starts
#                      again on the same config; OUT/shelf-events.tsv records when.
#   --cut-path I       S (--cut-after) seconds after the guest's fio started, path I's relay
#                      cuts the link (SIGUSR1) for --cut-for seconds (default 20), then
#                      restores it (SIGUSR2); OUT/shelf-events.tsv records when.
# Files in OUT: shelf.yaml, shelf.log (every start appended), relayI.json (the relay's counts,
# written when the harness stops this script), paths.tsv, shelf-events.tsv.
# Everything stops when the harness ends this script's process group (SIGTERM).
set -uo pipefail
bin= aoebench= ifaces= mtu=1500 out= shelf=1 disk= seconds=900 scrape=1 restart_after= down=3
cut_path= cut_after=5 cut_for=20
relay_all=
declare -A relay_path=()
while (($#)); do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --aoebench) aoebench=$2; shift 2 ;;
    --ifaces) ifaces=$2; shift 2 ;;
    --mtu) mtu=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --shelf) shelf=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --scrape) scrape=$2; shift 2 ;;
    --relay-all) relay_all=$2; shift 2 ;;
    --relay-[0-9]*) relay_path[${1#--relay-}]=$2; shift 2 ;;
    --restart-after) restart_after=$2; shift 2 ;;
    --down) down=$2; shift 2 ;;
    --cut-path) cut_path=$2; shift 2 ;;
    --cut-after) cut_after=$2; shift 2 ;;
    --cut-for) cut_for=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "shelf.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for v in bin aoebench ifaces out; do
  [ -n "${!v}" ] || { echo "shelf.sh: --$v is required" >&2; exit 2; }
done
disk=${disk:-$out/lun0.img}
t0=$(date +%s.%N)
since() { awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }'; }
event() { printf '%s\t%s\n' "$(since)" "$*" >>"$out/shelf-events.tsv"; echo "[shelf.sh $(since)s] $*"; }

relays=() ports=() shelf_pid= scraper=
stop_all() {
  [ -z "$scraper" ] || kill "$scraper" 2>/dev/null
  [ -z "$shelf_pid" ] || kill -TERM "$shelf_pid" 2>/dev/null
  # SIGINT: the relay stops and prints its counts.
  for p in "${relays[@]}"; do kill -INT "$p" 2>/dev/null; done
  wait
  exit "${1:-0}"
}
trap stop_all TERM INT

IFS=, read -r -a taps <<<"$ifaces"
for i in "${!taps[@]}"; do
  tap=${taps[$i]}
  ip link add "rl$i" mtu "$mtu" type veth peer name "sp$i" mtu "$mtu" || exit 2
  ip link set "rl$i" up && ip link set "sp$i" up || exit 2
  ports+=("sp$i")
  # shellcheck disable=SC2086 # the relay options are a list
  "$aoebench" relay --a "$tap" --b "rl$i" --duration "${seconds}s" $relay_all ${relay_path[$i]:-} \
    >"$out/relay$i.json" 2>"$out/relay$i.log" &
  relays+=($!)
  event "path $i: $tap <-> relay <-> sp$i (${relay_all:-clean}${relay_path[$i]:+ ${relay_path[$i]}})"
done

{
  echo "shelf: $shelf"
  echo "ports:"
  for p in "${ports[@]}"; do echo "  - { interface: $p, mode: packet }"; done
  echo "state_dir: $out/state"
  echo "admin: { socket: $out/admin.sock }"
  echo 'metrics: { listen: "127.0.0.1:9478" }'
  echo "luns:"
  echo "  - { slot: 0, file: $disk, length: 1GiB, create: true }"
} >"$out/shelf.yaml"

start_shelf() {
  ETHERSHELF_LOG=info "$bin" serve --config "$out/shelf.yaml" >>"$out/shelf.log" 2>&1 &
  shelf_pid=$!
  event "shelf started (pid $shelf_pid)"
}
start_shelf

# Per-path counters, scraped from the shelf's own metrics. Each row is stamped when the
# answer has arrived (python's start-up can take a second on a loaded machine): the counters
# it holds were read before that moment.
(
  while sleep "$scrape"; do
    python3 - "$t0" >>"$out/paths.tsv" 2>/dev/null <<'EOF'
import re, sys, time, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9478/metrics", timeout=2).read().decode()
stamp = "%.1f" % (time.time() - float(sys.argv[1]))
rows = {}
for m in re.finditer(r'^ethershelf_path_(rx|tx)_frames_total\{([^}]*)\} (\S+)$', text, re.M):
    port = re.search(r'port="([^"]*)"', m.group(2)).group(1)
    rows.setdefault(port, {"rx": 0, "tx": 0})[m.group(1)] += float(m.group(3))
for port, c in sorted(rows.items()):
    print(f"{stamp}\t{port}\t{c['rx']:.0f}\t{c['tx']:.0f}")
EOF
  done
) &
scraper=$!

if [ -n "$restart_after$cut_path" ]; then
  until grep -qs fio_start "$out/events.tsv"; do sleep 0.5; done
  event "guest fio started"
fi
if [ -n "$cut_path" ]; then
  sleep "$cut_after"
  kill -USR1 "${relays[$cut_path]}"
  event "path $cut_path cut"
  sleep "$cut_for"
  kill -USR2 "${relays[$cut_path]}"
  event "path $cut_path restored"
fi
if [ -n "$restart_after" ]; then
  sleep "$restart_after"
  kill -KILL "$shelf_pid"
  wait "$shelf_pid" 2>/dev/null
  event "shelf killed (SIGKILL)"
  sleep "$down"
  start_shelf
fi
# The shelf should run until the harness stops this script; if it exits, so does this script
# (with status 1), and the harness reports the target gone.
wait "$shelf_pid"
status=$?
event "shelf exited on its own (status $status)"
shelf_pid=
stop_all 1
