#!/usr/bin/env bash
# deploy/image/update.sh NEW.img TARGET: updates an ethershelf appliance disk to a new image.
#
# TARGET is the appliance's boot disk (a block device, e.g. the box's disk seen from a rescue
# system or another machine, or the disk image of a VM), with the shelf powered off. The
# boot (ESBOOT) and system (ESSYSTEM) partitions are replaced by NEW.img's; the configuration
# (ESCONFIG: shelf.yaml) and the state (ESSTATE: config strings, masks, reservations, the
# LUN book) are kept, and so are the data disks (never touched). Both must have the
# appliance's layout: partitions 1 and 2 at the same places and sizes (build.sh keeps them
# fixed), or nothing is written.
set -euo pipefail
export LC_ALL=C
[ $# = 2 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
new=$1 target=$2
[ -r "$new" ] || { echo "update.sh: cannot read $new" >&2; exit 2; }
[ -w "$target" ] || { echo "update.sh: cannot write $target" >&2; exit 2; }
layout() {
  sfdisk -J "$1" | python3 -c '
import json, sys
parts = json.load(sys.stdin)["partitiontable"]["partitions"]
print(len(parts), " ".join("%d:%d:%s" % (p["start"], p["size"], p["type"]) for p in parts))'
}
want=$(layout "$new") have=$(layout "$target")
read -r n_new p_new <<<"$want"
read -r n_have p_have <<<"$have"
read -ra new_parts <<<"$p_new"
read -ra have_parts <<<"$p_have"
if [ "$n_new" != 4 ] || [ "$n_have" != 4 ] || [ "${new_parts[0]}" != "${have_parts[0]}" ] ||
  [ "${new_parts[1]}" != "${have_parts[1]}" ]; then
  echo "update.sh: $target does not have the layout of $new (partitions: $p_have vs $p_new); nothing written" >&2
  exit 1
fi
if [ -b "$target" ] && grep -q "^$(readlink -f "$target")" /proc/mounts; then
  echo "update.sh: $target has mounted partitions: update it with the shelf powered off" >&2
  exit 1
fi
for i in 0 1; do
  IFS=: read -r start size _ <<<"${new_parts[$i]}"
  ((start % 2048 == 0 && size % 2048 == 0)) || { echo "update.sh: partition $((i + 1)) is not MiB-aligned" >&2; exit 1; }
  # Whole partitions, zeros included: the new file systems must not see old blocks.
  dd if="$new" of="$target" bs=1M skip=$((start / 2048)) seek=$((start / 2048)) \
    count=$((size / 2048)) conv=notrunc status=none
done
sync "$target" 2>/dev/null || sync
# The MBR boot code follows the new image too (the partition table is the same).
dd if="$new" of="$target" bs=440 count=1 conv=notrunc status=none
echo "updated $target: boot and system from $new; ESCONFIG and ESSTATE kept"
