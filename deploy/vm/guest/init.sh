#!/bin/sh
# PID 1 of the initiator VM (busybox sh). Packed into the initramfs by deploy/vm/initiator.sh.
#
# Talks to the host only through the second serial port (see /lib/esvm.sh, deploy/vm/guest/
# lib.sh). The run's settings come from /etc/esvm.conf, the fio job from /etc/esvm/job.fio and
# an optional scenario script from /etc/esvm/script.sh, all in the small per-run archive the
# host appends to the cached initramfs.

/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

# Defaults; /etc/esvm.conf overrides them.
ESVM_DEV=e1.0 ESVM_MTU=1500 ESVM_NICS=1 ESVM_WAIT=30 ESVM_FIO_TIMEOUT=300
ESVM_AOE_PARAMS="" ESVM_FIO_ARGS=""
# shellcheck disable=SC1091 # written by the host for each run
[ -r /etc/esvm.conf ] && . /etc/esvm.conf

# shellcheck disable=SC1091 # in the initramfs
. /lib/esvm.sh
[ "$HOST" = /dev/console ] || stty -F "$HOST" raw -echo 2>/dev/null
shutdown_vm() {
	attach dmesg dmesg
	ev poweroff
	sync
	poweroff -f
	sleep 3
	echo o > /proc/sysrq-trigger
}
abort() { ev fail "$*"; shutdown_vm; }

ev init "kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"

# NIC drivers (and anything else listed), dependencies first.
MODS=/lib/modules/esvm
while read -r m; do
	[ -n "$m" ] || continue
	insmod "$MODS/$m.ko" || abort "insmod $m failed"
done < "$MODS/load-order"

# Bring every NIC up at the run's MTU.
ifaces=""
i=0
while [ "$i" -lt "$ESVM_NICS" ]; do
	nic=eth$i
	tries=0
	until [ -e "/sys/class/net/$nic" ]; do
		tries=$((tries + 1))
		[ "$tries" -le 100 ] || abort "$nic did not appear within 10 s"
		sleep 0.1
	done
	ip link set "$nic" mtu "$ESVM_MTU" || abort "cannot set MTU $ESVM_MTU on $nic"
	ip link set "$nic" up || abort "cannot bring $nic up"
	ifaces="${ifaces:+$ifaces }$nic"
	i=$((i + 1))
done
ip link set lo up
ev nics_up "ifaces=$(echo "$ifaces" | tr ' ' ,) mtu=$(cat /sys/class/net/eth0/mtu)"

# The AoE initiator: discovery broadcasts go out on our NICs only.
# shellcheck disable=SC2086 # ESVM_AOE_PARAMS is a list of module parameters
insmod "$MODS/aoe.ko" "aoe_iflist=\"$ifaces\"" $ESVM_AOE_PARAMS || abort "insmod aoe failed"
ev aoe_loaded "params=aoe_iflist=$(echo "$ifaces" | tr ' ' ,)${ESVM_AOE_PARAMS:+,$ESVM_AOE_PARAMS}"

# Wait until the target is configured: block device present, non-zero size, state "up".
BDEV=/dev/etherd/$ESVM_DEV
SYSD="/sys/block/etherd!$ESVM_DEV"
ticks=0
while :; do
	if [ -b "$BDEV" ] && [ -r "$SYSD/size" ] && [ "$(cat "$SYSD/size")" != 0 ]; then
		case "$(cat "$SYSD/state" 2>/dev/null)" in up*) break ;; esac
	fi
	ticks=$((ticks + 1))
	[ "$ticks" -le $((ESVM_WAIT * 5)) ] || abort "$BDEV not up within ${ESVM_WAIT} s"
	# Ask again every second, as aoe-discover would.
	[ $((ticks % 5)) = 0 ] && [ -c /dev/etherd/discover ] && echo > /dev/etherd/discover
	sleep 0.2
done
aoe_attrs() {
	for a in state payload size mac netif firmware-version queue/max_hw_sectors_kb queue/max_sectors_kb; do
		[ -r "$SYSD/$a" ] && echo "$a=$(cat "$SYSD/$a")"
	done
}
ev device_up "dev=$BDEV payload=$(cat "$SYSD/payload" 2>/dev/null) sectors=$(cat "$SYSD/size")"
attach aoe_sysfs aoe_attrs

{ printf '[global]\nfilename=%s\n' "$BDEV"; cat /etc/esvm/job.fio; } > /tmp/job.fio
: > /tmp/fio.stderr
ev fio_start
if [ -r /etc/esvm/script.sh ]; then
	# A scenario instead of the one fio run; bounded by the same limit.
	export BDEV ESVM_DEV ESVM_NICS ESVM_FIO_ARGS
	timeout "$ESVM_FIO_TIMEOUT" sh -c '. /lib/esvm.sh; . /etc/esvm/script.sh' >> /tmp/fio.stderr 2>&1
	rc=$?
else
	timeout "$ESVM_FIO_TIMEOUT" sh -c '. /lib/esvm.sh; run_fio /tmp/job.fio'
	rc=$?
fi
ev fio_end "rc=$rc"
attach fio_json cat /tmp/fio.json
attach fio_stderr cat /tmp/fio.stderr
attach aoe_sysfs_after aoe_attrs
if [ -d /sys/kernel/debug/aoe ]; then
	# shellcheck disable=SC2016 # expanded by the inner shell
	attach aoe_debugfs sh -c 'for f in /sys/kernel/debug/aoe/*; do echo "# $f"; cat "$f"; done'
fi
ev result "fio_rc=$rc"
shutdown_vm
