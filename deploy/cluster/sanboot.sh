#!/usr/bin/env bash
# deploy/cluster/sanboot.sh: diskless boot from a LUN through iPXE (the cluster guide's
# scenario 6).
#
# Builds a bootable LUN image: an MBR with SYSLINUX, partition 1 (FAT) holding Debian's kernel
# and the VM harness's initramfs (aoe.ko, busybox, fio, and deploy/cluster/guest/diskless.sh),
# partition 2 an ext2 root file system. One shelf serves it as e1.0. A VM with no disk boots
# iPXE (Debian's ipxe.lkrn, unpacked from the `ipxe` package into the harness cache) with
# `ifopen net0 && sanboot aoe:e1.0`: iPXE reads the LUN through INT 13h (AoE, 2 sectors per
# command), SYSLINUX loads the kernel and initramfs from it, the booted system loads aoe.ko,
# finds its root file system on e1.0 (partition 2), writes a marker into it and runs a small
# verify job. A second, ordinary initiator VM then reads the marker back through the shelf.
#
# Usage: deploy/cluster/sanboot.sh [--out DIR] [--keep]
# Exit status 0 when the marker came back. Needs root, qemu-system-x86, syslinux, mtools,
# dosfstools, e2fsprogs, fdisk, and a built ethershelf.
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/cluster/lib.sh
. deploy/cluster/lib.sh
cl_init sanboot 16 "$@"
for t in syslinux:syslinux mcopy:mtools mkfs.vfat:dosfstools mkfs.ext2:e2fsprogs sfdisk:fdisk; do
  command -v "${t%%:*}" >/dev/null || cl_fail "missing ${t%%:*}: apt-get install ${t#*:}"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || cl_fail "missing $mbr: apt-get install syslinux-common"
cl_traps
marker="diskless-$(date +%s)-$$"

cl_say "the boot files: the harness's kernel and initramfs with the diskless guest script"
deploy/vm/initiator.sh --export-boot "$OUT/boot" --guest-script deploy/cluster/guest/diskless.sh \
  --wait 60 --fio-timeout 600 --append "esvm.marker=$marker" >"$OUT/export.log" 2>&1 ||
  { cat "$OUT/export.log"; cl_fail "the harness could not export its boot files"; }

cl_say "the LUN image: MBR + SYSLINUX, p1 FAT (kernel, initramfs), p2 ext2 (the root)"
work=$OUT/image
mkdir -p "$work/root"
# Compressed, so that iPXE moves a quarter of the bytes (2 sectors per AoE command).
gzip -6 -c "$OUT/boot/initrd.cpio" >"$work/initrd.img" || cl_fail "gzip"
boot_mib=$(($(du -m "$OUT/boot/vmlinuz" "$work/initrd.img" | awk '{ s += $1 } END { print s }') + 16))
root_mib=16 lun_mib=256
mkfs.vfat -n ESBOOT -C "$work/boot.img" $((boot_mib * 1024)) >/dev/null || cl_fail "mkfs.vfat"
{
  echo "DEFAULT diskless"
  echo "PROMPT 0"
  echo "TIMEOUT 0"
  echo "LABEL diskless"
  echo "  LINUX /vmlinuz"
  echo "  INITRD /initrd.img"
  echo "  APPEND $(cat "$OUT/boot/cmdline")"
} >"$work/syslinux.cfg"
mmd -i "$work/boot.img" ::/syslinux
mcopy -i "$work/boot.img" "$OUT/boot/vmlinuz" ::/vmlinuz
mcopy -i "$work/boot.img" "$work/initrd.img" ::/initrd.img
mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::/syslinux/
syslinux --install --directory /syslinux "$work/boot.img" || cl_fail "syslinux --install"
echo "ethershelf diskless root, built $(date -u +%FT%TZ)" >"$work/root/ethershelf-root"
mkfs.ext2 -q -F -L ESROOT -d "$work/root" "$work/root.img" "${root_mib}M" || cl_fail "mkfs.ext2"
lun=$OUT/lun0.img
rm -f "$lun"
truncate -s "${lun_mib}M" "$lun"
p1=2048 p1_len=$((boot_mib * 2048))
p2=$((p1 + p1_len)) p2_len=$((root_mib * 2048))
dd if="$work/boot.img" of="$lun" bs=512 seek=$p1 conv=sparse,notrunc status=none
dd if="$work/root.img" of="$lun" bs=512 seek=$p2 conv=sparse,notrunc status=none
printf 'label: dos\nstart=%s, size=%s, type=c, bootable\nstart=%s, size=%s, type=83\n' \
  $p1 $p1_len $p2 $p2_len | sfdisk --quiet "$lun" || cl_fail "sfdisk"
dd if="$mbr" of="$lun" bs=440 count=1 conv=notrunc status=none
((p2 + p2_len < 224 * 2048)) || cl_fail "the boot files are too large for the LUN's layout"
cl_say "LUN: $lun_mib MiB, p1 $boot_mib MiB, p2 $root_mib MiB; marker $marker"

cl_segment 1 1500
cl_shelf_ns 1 1500
cl_shelf_config 1 "$OUT/shelf1" "$lun" ""
cl_shelf_start 1 "$OUT/shelf1"
sleep 1

cl_say "the diskless VM: iPXE sanboot aoe:e1.0"
deploy/vm/initiator.sh --sanboot --boot-timeout 900 --wait 60 --fio-timeout 600 --timeout 1500 \
  --out "$OUT/diskless" -- deploy/cluster/uplink.sh "$CL_NS" br0 '{IFACES}' '{MTU}' \
  >"$OUT/diskless.log" 2>&1 &
CL_PIDS=($!)
wait "${CL_PIDS[0]}"
rc=$?
CL_PIDS=()
cat "$OUT/diskless/summary.txt" 2>/dev/null
((rc == 0)) || { KEEP=1; cl_fail "the diskless VM failed (results in $OUT)"; }

cl_say "the reader VM: the marker, read back through the shelf"
deploy/vm/initiator.sh --guest-script deploy/cluster/guest/read-marker.sh --wait 60 \
  --fio-timeout 300 --out "$OUT/reader" \
  -- deploy/cluster/uplink.sh "$CL_NS" br0 '{IFACES}' '{MTU}' >"$OUT/reader.log" 2>&1 &
CL_PIDS=($!)
wait "${CL_PIDS[0]}"
rc=$?
CL_PIDS=()
read_back=$(grep -a '^ESVM ev marker_read' "$OUT/reader/serial1.log" | tr -d '\r' | cut -d' ' -f5-)
cl_say "marker written: $marker; read back: ${read_back:-nothing}"
grep -a "frames\|reads\|sectors" "$OUT/shelf1/shelf.log" | tail -n 3
((rc == 0)) && [ "$read_back" = "$marker" ] || { KEEP=1; cl_fail "the marker did not come back (results in $OUT)"; }
cl_say "PASSED: booted from e1.0 through iPXE with no disk, root on e1.0, marker read back through the shelf"
[ -n "$KEEP" ] && cl_say "results in $OUT" || rm -rf "$OUT"
