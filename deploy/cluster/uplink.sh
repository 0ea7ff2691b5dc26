#!/usr/bin/env bash
# deploy/cluster/uplink.sh: the TARGET of a deploy/vm/initiator.sh run whose VM joins a
# segment that a scenario driver made (deploy/cluster/md.sh, handoff.sh): it puts each of the
# VM's taps on a bridge of its own namespace, with a veth into the driver's namespace,
# enslaved there to the bridge of the same index. It then waits until the harness stops it
# (SIGTERM) and removes the veths.
#
# Usage: deploy/cluster/uplink.sh SHARED_NS BRIDGES {IFACES} {MTU}
#   SHARED_NS  the driver's namespace; BRIDGES: its bridges, comma-separated (tap i joins
#   bridge i).
set -uo pipefail
[ $# = 4 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shared=$1 mtu=$4
IFS=, read -r -a bridges <<<"$2"
IFS=, read -r -a taps <<<"$3"
((${#bridges[@]} >= ${#taps[@]})) || { echo "uplink.sh: ${#taps[@]} taps but ${#bridges[@]} bridges" >&2; exit 2; }
made=()
cleanup() {
  for l in "${made[@]}"; do ip link del "$l" 2>/dev/null; done
  exit 0
}
trap cleanup TERM INT
for i in "${!taps[@]}"; do
  # Names unique per run (the peer lives in the shared namespace beside other runs' peers).
  local_end="ul$i" peer="u$$-$i"
  ip link add "ub$i" type bridge || exit 2
  ip link set "ub$i" mtu "$mtu" up
  ip link add "$local_end" mtu "$mtu" type veth peer name "$peer" mtu "$mtu" netns "$shared" || exit 2
  made+=("$local_end")
  ip link set "$local_end" master "ub$i" up
  ip link set "${taps[$i]}" master "ub$i"
  ip -n "$shared" link set "$peer" master "${bridges[$i]}" up || exit 2
  echo "uplink.sh: ${taps[$i]} -> ub$i -> $local_end ~ $peer -> $shared/${bridges[$i]}"
done
while true; do sleep 3600 & wait $!; done
