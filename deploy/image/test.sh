#!/usr/bin/env bash
# deploy/image/test.sh: the appliance image end to end, in qemu (TCG), with the Linux kernel
# initiator in a second VM (deploy/vm). Everything runs inside the namespace that
# deploy/vm/initiator.sh creates: two bridges, the initiator VM with one NIC on each, the
# appliance with one NIC on each (the initiator round-robins over both paths), five virtio
# disks on the appliance (a RAID-10 LUN over four, `disks: auto`, one hot spare).
#
# Usage: deploy/image/test.sh [--smoke | --full] [--image IMG] [--out DIR]
#   --smoke  (the default; what CI runs) build the image, boot it, the initiator passes
#            fio verify over both paths; boot-to-serving time and the paths' frames reported
#   --full   also, during a longer fio verify run:
#            (a) a member disk is hot-unplugged through the qemu monitor: the array degrades,
#                the spare rebuilds, the state returns to normal;
#            (b) the appliance's power is cut during writes and it boots again: the array
#                assembles, and everything fio wrote verifies;
#            (c) shelf.yaml on ESCONFIG gains a second LUN and the appliance reboots: the
#                new LUN serves, the old one keeps its data;
#            then the update path: a config string and a mask are set, a v2 image replaces
#            the system (deploy/image/update.sh), and the LUN serves the same data with the
#            same config string and mask.
#   --image IMG  use this image instead of building one (its ESCONFIG is rewritten)
#   --out DIR    keep everything there (default: a new directory under /var/tmp)
# Exit status 0 when everything held. Needs root, qemu-system-x86, python3, mtools.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
mode=smoke image= out=
while (($#)); do
  case "$1" in
    --smoke) mode=smoke; shift ;;
    --full) mode=full; shift ;;
    --image) image=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root" >&2; exit 2; }
for t in qemu-system-x86_64:qemu-system-x86 python3:python3 mcopy:mtools sfdisk:fdisk; do
  command -v "${t%%:*}" >/dev/null || { echo "test.sh: missing ${t%%:*}: apt-get install ${t#*:}" >&2; exit 2; }
done
keep=${out:+yes}
out=${out:-$(mktemp -d /var/tmp/ethershelf-image-test.XXXXXX)}
mkdir -p "$out"
t0=$SECONDS
say() { echo "[image-test $((SECONDS - t0))s] $*"; }
fail() { say "FAIL: $*"; exit 1; }
console() { python3 deploy/image/console.py "$out/vm" "$@"; }

deb=$(ls -t target/debian/ethershelf_*_amd64.deb 2>/dev/null | head -n 1 || true)
if [ -z "$image" ]; then
  say "building the image"
  bash deploy/image/build.sh ${deb:+--deb "$deb"} --root-password shelfadmin --out "$out/v1.img" >"$out/build.log" 2>&1 ||
    { tail -n 20 "$out/build.log"; fail "image build failed"; }
  image=$out/v1.img
  deb=$(ls -t target/debian/ethershelf_*_amd64.deb | head -n 1)
fi
grep -a "== done" "$out/build.log" 2>/dev/null || true
mkdir -p "$out/vm"
cp --sparse=always "$image" "$out/vm/disk.img"

# Partition 3 (ESCONFIG) of an image, as an mtools target.
esconfig() {
  local start
  start=$(sfdisk -J "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][2]["start"] * 512)')
  echo "$1@@$start"
}
mcopy -o -i "$(esconfig "$out/vm/disk.img")" deploy/image/test-shelf.yaml ::/shelf.yaml

# One run of the initiator VM (fio job $1, results in $2) against the appliance VM.
harness() {
  deploy/vm/initiator.sh --nics 2 --settle 2 --wait 420 --timeout 1500 --fio-timeout 1200 \
    --aoe-params "aoe_deadsecs=600" --fio-job "$1" --out "$2" \
    -- deploy/image/appliance-vm.sh --image "$out/vm/disk.img" --dir "$out/vm" --taps '{IFACES}'
}
# Waits until run $1's initiator sees the device (or the run ends); prints the seconds from
# the appliance's last power-on to that moment (boot to serving, TCG).
serving_after() {
  local run=$1 pid=$2
  until grep -qs "device_up" "$run/events.tsv"; do
    kill -0 "$pid" 2>/dev/null || { echo "?"; return 1; }
    sleep 1
  done
  python3 -c 'import sys,time; print(f"{time.time() - float(open(sys.argv[1]).read().split()[-3]):.0f}")' "$out/vm/boots"
}
# Waits until run $1's fio started (fails if the run ends first).
fio_started() {
  local run=$1 pid=$2
  until grep -qs "fio_start" "$run/events.tsv"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$run.log"; fail "$run ended before fio started"; }
    sleep 2
  done
}

case $mode in
smoke)
  say "smoke: boot the appliance, the Linux initiator verifies over two paths"
  harness deploy/vm/jobs/verify-small.fio "$out/run1" >"$out/run1.log" 2>&1 &
  run=$!
  serving=$(serving_after "$out/run1" "$run" || true)
  say "boot to serving: $serving s (TCG)"
  console wait-prompt 120 || fail "no shelf prompt on the serial console"
  console cmd "ifstat" | tee "$out/ifstat.txt"
  wait "$run" || { tail -n 30 "$out/run1.log"; fail "the initiator run failed (logs in $out)"; }
  tail -n 12 "$out/run1.log"
  [ -n "$keep" ] || trap 'rm -rf "$out"' EXIT
  say "PASSED (smoke): the appliance booted (serving after $serving s under TCG), the shelf console answered, fio verify passed over two paths; results in $out"
  ;;
full)
  # Run 1: (a) and (b) during fio.
  say "run 1: fio verify while a member is pulled (a) and the power is cut (b)"
  harness deploy/vm/jobs/appliance-faults.fio "$out/run1" >"$out/run1.log" 2>&1 &
  run=$!
  say "boot to serving: $(serving_after "$out/run1" "$run") s (TCG)"
  fio_started "$out/run1" "$run"
  console wait-prompt 120 || fail "no shelf console on the serial port"
  console cmd "list -l" | tee "$out/a-before.txt"
  sleep 5
  say "(a) hot-unplug disk1 (member 0.0.1) through the qemu monitor"
  console qmp '{"execute": "device_del", "arguments": {"id": "disk1"}}' | tee "$out/a-qmp.txt"
  deadline=$((SECONDS + 300)); seen_rebuild=
  while ((SECONDS < deadline)); do
    state=$(console cmd "list -l")
    case "$state" in *recovering* | *degraded*) seen_rebuild=1 ;; esac
    if [ -n "$seen_rebuild" ] && ! grep -qE "recovering|degraded|failed" <<<"$(grep -E '^ +0\.0 ' <<<"$state")"; then break; fi
    sleep 3
  done
  echo "$state" | tee "$out/a-after.txt"
  [ -n "$seen_rebuild" ] || fail "(a) the array never degraded after the unplug"
  grep -qE '^ +0\.0 .*normal' <<<"$state" || fail "(a) the array did not return to normal in 300 s"
  say "(a) passed: degraded, rebuilt onto the spare, normal again"
  kill -0 "$run" 2>/dev/null || fail "fio ended before the power cut: make appliance-faults.fio longer"
  say "(b) power cut during writes (qemu quit), then boot"
  touch "$out/vm/restart"
  console qmp '{"execute": "quit"}' >/dev/null || true
  sleep 5
  console wait-prompt 400 || fail "(b) the appliance did not come back"
  say "(b) back: $(console cmd 'list -l' | tr -s ' ' | head -n 3 | tr '\n' '|')"
  wait "$run" || { tail -n 30 "$out/run1.log"; fail "run 1: fio failed (errors or verify mismatch)"; }
  tail -n 10 "$out/run1.log"
  say "run 1 passed: fio verified everything it wrote through (a) and (b)"

  # Run 2: (c) a second LUN from a changed shelf.yaml; the old LUN keeps its data.
  say "(c) shelf.yaml gains LUN 1 (a file on the state partition, created at start)"
  { cat deploy/image/test-shelf.yaml
    echo "  - { slot: 1, file: /var/lib/ethershelf/lun1.img, length: 64MiB, create: true }"; } >"$out/shelf-c.yaml"
  mcopy -o -i "$(esconfig "$out/vm/disk.img")" "$out/shelf-c.yaml" ::/shelf.yaml
  harness deploy/vm/jobs/appliance-after.fio "$out/run2" >"$out/run2.log" 2>&1 &
  run=$!
  fio_started "$out/run2" "$run"
  # Before the update: a config string from the wire and a mask from the console.
  ns=$(cat "$out/vm/netns")
  ip netns exec "$ns" target/debug/aoebench cfg --target 1.0 --if esbr0 --command set --string "vm-host-a" >"$out/cfg-set.txt" 2>&1 || true
  bridge_mac=$(ip netns exec "$ns" cat /sys/class/net/esbr0/address)
  # The initiator's two NICs, the bridge (aoebench above), and one more entry to recognise.
  # One command (run 2 may end soon; entries added one by one would block a path for a
  # while), short enough not to wrap: the initiator's two NICs and the bridge (aoebench).
  console cmd "mask 0 +525400e50001 +525400e50002 +${bridge_mac//:/}" | tee "$out/mask.txt"
  grep -qi "${bridge_mac//:/}" "$out/mask.txt" || fail "the mask was not set"
  wait "$run" || { tail -n 30 "$out/run2.log"; fail "(c) fio on the old and the new LUN failed"; }
  tail -n 8 "$out/run2.log"
  say "(c) passed: e1.1 serves, e1.0's data verifies"

  # Update: v2 replaces boot and system; ESCONFIG and ESSTATE stay.
  say "update: build v2, write its system over the appliance's"
  bash deploy/image/build.sh --deb "$deb" --root-password shelfadmin --version "v2-test" \
    --config "$out/shelf-c.yaml" --out "$out/v2.img" >"$out/build-v2.log" 2>&1 ||
    { tail -n 20 "$out/build-v2.log"; fail "v2 build failed"; }
  bash deploy/image/update.sh "$out/v2.img" "$out/vm/disk.img" | tee "$out/update.txt"
  harness deploy/vm/jobs/appliance-after.fio "$out/run3" >"$out/run3.log" 2>&1 &
  run=$!
  say "after the update, boot to serving: $(serving_after "$out/run3" "$run") s (TCG)"
  fio_started "$out/run3" "$run"
  ns=$(cat "$out/vm/netns")
  release=$(mtype -i "$out/vm/disk.img@@1048576" ::/release.txt)
  cfg=$(ip netns exec "$ns" target/debug/aoebench cfg --target 1.0 --if esbr0 --command read 2>&1 || true)
  mask=$(console cmd "mask 0")
  wait "$run" || { tail -n 30 "$out/run3.log"; fail "after the update, fio on e1.0/e1.1 failed"; }
  printf 'release: %s\nconfig string: %s\nmask: %s\n' "$release" "$cfg" "$mask" | tee "$out/update-check.txt"
  grep -q "v2-test" <<<"$release" || fail "the system was not replaced by v2: $release"
  grep -q "vm-host-a" <<<"$cfg" || fail "the config string did not survive the update"
  grep -qi "525400e52000" <<<"$mask" || fail "the mask did not survive the update"
  say "PASSED (full): (a) unplug+rebuild, (b) power cut, (c) new LUN, update kept data, config string and mask; results in $out"
  ;;
esac
