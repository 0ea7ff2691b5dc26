#!/usr/bin/env bash
# deploy/image/appliance-vm.sh: the appliance image as a qemu VM, for deploy/image/test.sh.
# Runs inside a lab namespace (deploy/vm/initiator.sh starts it there as its TARGET): each
# of the initiator VM's taps gets a bridge, and the appliance one NIC on each bridge, so the
# initiator reaches the shelf over two paths. Five virtio disks (a RAID-10 over four, one
# spare), the serial console on a Unix socket (the shelf console: deploy/image/console.py),
# the qemu monitor on QMP. qemu is started again whenever it exits and DIR/restart exists
# (a power cut and a boot), and the script ends when qemu exits otherwise.
#
# Usage: appliance-vm.sh --image IMG --dir DIR --taps TAP0,TAP1 [--mem MiB]
set -euo pipefail
image= dir= taps= mem=1024
while (($#)); do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --taps) taps=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    *) echo "appliance-vm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$image" ] && [ -d "$dir" ] && [ -n "$taps" ] || { echo "appliance-vm.sh: --image, --dir and --taps are required" >&2; exit 2; }
ip netns identify $$ >"$dir/netns"
nics=()
i=0
IFS=, read -ra list <<<"$taps"
for tap in "${list[@]}"; do
  br=esbr$i app=esapp$i
  mtu=$(cat "/sys/class/net/$tap/mtu")
  # A fixed address: a mask entry for the bridge (test.sh's aoebench) holds across runs.
  ip link add "$br" address "52:54:00:e5:20:0$i" type bridge
  ip tuntap add dev "$app" mode tap
  ip link set "$app" mtu "$mtu" master "$br" up
  ip link set "$tap" master "$br" up
  ip link set "$br" mtu "$mtu" up
  # Slots 8, 9...: the guest names them ens8, ens9 (PCI slot names).
  nics+=(-netdev "tap,id=n$i,ifname=$app,script=no,downscript=no"
    -device "virtio-net-pci,netdev=n$i,addr=0x$(printf %x $((8 + i))),mac=52:54:00:e5:10:0$i")
  i=$((i + 1))
done
disks=()
for d in 0 1 2 3 4; do
  [ -f "$dir/disk$d.img" ] || truncate -s 256M "$dir/disk$d.img"
  # Hot-pluggable (test (a) removes one through the monitor): slots 0x10-0x14, by-path order.
  disks+=(-drive "file=$dir/disk$d.img,format=raw,if=none,id=d$d,cache=none,aio=threads"
    -device "virtio-blk-pci,drive=d$d,id=disk$d,addr=0x$(printf %x $((16 + d)))")
done
boots=0
while :; do
  boots=$((boots + 1))
  rm -f "$dir/restart"
  echo "$(date +%s.%N) boot $boots" >>"$dir/boots"
  qemu-system-x86_64 -accel tcg -m "$mem" -smp 2 -nographic -no-reboot \
    -drive "file=$image,format=raw,if=none,id=boot,cache=writeback" \
    -device virtio-blk-pci,drive=boot,addr=0x5,bootindex=0 \
    "${disks[@]}" "${nics[@]}" \
    -chardev "socket,id=console,path=$dir/console.sock,server=on,wait=off,logfile=$dir/serial.log,logappend=on" \
    -serial chardev:console \
    -qmp "unix:$dir/qmp.sock,server=on,wait=off" -monitor none >>"$dir/qemu.log" 2>&1 || true
  [ -f "$dir/restart" ] || break
done
