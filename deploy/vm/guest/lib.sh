# shellcheck shell=sh
# Helpers of the initiator VM's guest (busybox sh), sourced by /init and by --guest-script
# scripts. The host is reached only through the second serial port (ttyS1), one record per
# line:
#   ESVM ev NAME UPTIME [text]     a step was reached (UPTIME = guest seconds since boot)
#   ESVM begin NAME                 the lines up to "ESVM end NAME" are one attachment
#   ESVM end NAME

HOST=/dev/ttyS1
[ -c "$HOST" ] || HOST=/dev/console

uptime_s() { read -r u _ < /proc/uptime; echo "$u"; }
# ev NAME [text]: report a step.
ev() {
	line="ESVM ev $1 $(uptime_s)${2:+ $2}"
	echo "$line" > "$HOST"
	echo "$line" > /dev/console
}
# attach NAME CMD...: send the output of CMD as one attachment.
attach() {
	name=$1; shift
	{ echo "ESVM begin $name"; "$@" 2>&1; echo "ESVM end $name"; } > "$HOST"
}
# run_fio JOB [JSON]: fio with JSON output (default /tmp/fio.json, the run's main result);
# its messages go to /tmp/fio.stderr. Returns fio's status.
run_fio() {
	# shellcheck disable=SC2086 # ESVM_FIO_ARGS is a list of fio options
	fio --output-format=json --output="${2:-/tmp/fio.json}" $ESVM_FIO_ARGS "$1" >> /tmp/fio.stderr 2>&1
}
# verify_job FILE DEVICE NAME RW BS OFFSET SIZE [EXTRA]: a crc32c-verified fio job file
# (direct libaio, iodepth 8, verify_fatal, fsync at the end) with one job NAME; EXTRA is one
# more job line.
verify_job() {
	cat > "$1" <<EOF
[global]
filename=$2
ioengine=libaio
direct=1
verify=crc32c
do_verify=1
verify_fatal=1
iodepth=8
end_fsync=1
[$3]
rw=$4
bs=$5
offset=$6
size=$7
${8:-}
EOF
}
# wait_block DEV SECONDS: until DEV is a block device (status 1 when the time is up).
wait_block() {
	t=0
	until [ -b "$1" ]; do
		t=$((t + 1))
		[ "$t" -le $(($2 * 2)) ] || return 1
		sleep 0.5
	done
}
