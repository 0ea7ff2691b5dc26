#!/usr/bin/env bash
# deploy/image/build.sh: the bootable ethershelf appliance image.
#
# Usage: deploy/image/build.sh [--config FILE] [--out FILE] [--deb FILE]
#                              [--root-password PW] [--version TEXT]
#
# Builds target/appliance/ethershelf.img (or --out) from Debian 12 packages (mmdebstrap) plus
# the ethershelf package (deploy/package.sh, or --deb). Write it to the box's boot disk or a
# USB stick (dd if=ethershelf.img of=/dev/sdX bs=4M conv=fsync), put shelf.yaml on its
# ESCONFIG partition, power on. Partitions (MBR, BIOS boot through SYSLINUX):
#   1 ESBOOT    FAT,   64 MiB  kernel, initramfs, SYSLINUX (replaced by an update)
#   2 ESSYSTEM  ext4, 1 GiB    the system, mounted read-only (replaced by an update)
#   3 ESCONFIG  FAT,   16 MiB  shelf.yaml (--config FILE, default deploy/image/shelf.yaml)
#   4 ESSTATE   ext4, 256 MiB  /var/lib/ethershelf: config strings, masks, reservations, the
#                              LUN book (kept by updates)
# The serial console (ttyS0, 115200) is the shelf console. An admin shell (`shell` at the
# console, or tty1) needs --root-password; without it root is locked and there is none.
# No loop devices or mounts are needed: file systems are made from directories (mkfs.ext4
# -d, mtools) and placed at their offsets. Needs root (mmdebstrap's root mode), network
# access to the Debian archive, and: mmdebstrap syslinux syslinux-common mtools dosfstools
# e2fsprogs fdisk (installed with apt-get when missing).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."

config=deploy/image/shelf.yaml
out=target/appliance/ethershelf.img
deb=
root_password=
version=
while (($#)); do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --root-password) root_password=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap root mode)" >&2; exit 2; }
[ -f "$config" ] || { echo "build.sh: no such config file: $config" >&2; exit 2; }

need=()
for pair in mmdebstrap:mmdebstrap syslinux:syslinux mcopy:mtools mkfs.vfat:dosfstools \
  mkfs.ext4:e2fsprogs sfdisk:fdisk; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
if ((${#need[@]})); then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

t0=$SECONDS
step() { echo "== $* ($((SECONDS - t0)) s)"; }
work=$(mktemp -d /var/tmp/ethershelf-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root

step "the ethershelf package"
if [ -z "$deb" ]; then
  deb=$(bash deploy/package.sh | tail -n 1)
fi
[ -f "$deb" ] || { echo "build.sh: no package at '$deb'" >&2; exit 1; }
cp "$deb" "$work/ethershelf.deb"
[ -n "$version" ] || version="$(dpkg-deb -f "$deb" Version) ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
# Validate the shelf file now (with this build's binary) so a wrong file fails the build,
# not the box. `disks: auto` is checked at boot, on the box's own disks.
if ! grep -qE '^disks:[[:space:]]*auto' "$config"; then
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/sbin/ethershelf >"$work/ethershelf"
  chmod +x "$work/ethershelf"
  "$work/ethershelf" check -c "$config" >/dev/null
fi

step "Debian 12 system (mmdebstrap)"
# linux-image-amd64 brings initramfs-tools; systemd-sysv makes systemd PID 1; udev names the
# disks (by-path) and NICs; iproute2 for the admin shell.
# The package goes in through a hook (a local .deb in --include is not reachable from the
# chroot in root mode); its dependencies come with the rest.
depends=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/[[:space:]]//g')
timeout 1800 mmdebstrap --quiet --mode=root --variant=minbase \
  --include=systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,iproute2,login,passwd,"$depends" \
  --customize-hook="copy-in $work/ethershelf.deb /tmp" \
  --customize-hook='chroot "$1" dpkg -i /tmp/ethershelf.deb && rm -f "$1/tmp/ethershelf.deb"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  bookworm "$root" >"$work/mmdebstrap.log" 2>&1 ||
  { mkdir -p "$(dirname "$out")"; cp "$work/mmdebstrap.log" "$out.mmdebstrap.log"
    grep -B8 -m3 -E '^E:|error' "$work/mmdebstrap.log" >&2
    echo "build.sh: mmdebstrap failed (whole log: $out.mmdebstrap.log)" >&2; exit 1; }

step "appliance files"
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
[ -f "$kernel" ] && [ -f "$initrd" ] || { echo "build.sh: no kernel/initramfs in the root" >&2; exit 1; }
kver=${kernel##*/vmlinuz-}
# Drivers a storage shelf never needs (sound, graphics, radio, cameras...): smaller system.
for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/bluetooth drivers/staging \
  drivers/infiniband drivers/isdn drivers/input/joystick drivers/iio net/wireless net/bluetooth \
  net/mac80211; do
  rm -rf "$root/usr/lib/modules/$kver/kernel/$d"
done
chroot "$root" depmod "$kver"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
cat >"$root/etc/fstab" <<'EOF'
# The ethershelf appliance: the system is read-only; the shelf's YAML and its state live on
# their own partitions, which updates keep.
LABEL=ESSYSTEM  /                    ext4   ro,noatime,errors=remount-ro                 0 1
LABEL=ESCONFIG  /etc/ethershelf      vfat   ro,nofail,umask=0077  0 0
LABEL=ESSTATE   /var/lib/ethershelf  ext4   rw,noatime,nofail  0 2
tmpfs           /tmp                 tmpfs  mode=1777,nosuid,nodev                       0 0
tmpfs           /var/tmp             tmpfs  mode=1777,nosuid,nodev                       0 0
tmpfs           /var/log             tmpfs  mode=0755,nosuid,nodev                       0 0
tmpfs           /var/lib/systemd     tmpfs  mode=0755,nosuid,nodev                       0 0
EOF
echo ethershelf >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tethershelf\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
printf 'ethershelf appliance %s\n' "$version" >"$root/etc/ethershelf-release"
mkdir -p "$root/etc/systemd/journald.conf.d" "$root/usr/lib/ethershelf" \
  "$root/etc/systemd/system/serial-getty@ttyS0.service.d" "$root/etc/systemd/system/ethershelf.service.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$root/etc/systemd/journald.conf.d/appliance.conf"
install -m 0755 deploy/image/files/shelf-console "$root/usr/lib/ethershelf/shelf-console"
install -m 0644 deploy/image/files/ethershelf-network.service "$root/etc/systemd/system/"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/shelf-console.conf" <<'EOF'
# The serial console is the shelf console (deploy/image/files/shelf-console).
[Service]
ExecStart=
ExecStart=-/usr/lib/ethershelf/shelf-console
StandardInput=tty-force
StandardOutput=tty
TTYPath=/dev/ttyS0
TTYReset=yes
TTYVHangup=yes
Restart=always
EOF
cat >"$root/etc/systemd/system/ethershelf.service.d/appliance.conf" <<'EOF'
# The appliance: the YAML is on ESCONFIG, the state on ESSTATE. A wrong YAML fails the check
# in ExecStartPre (the journal and the serial console say why) and is not retried in a loop.
[Unit]
RequiresMountsFor=/etc/ethershelf /var/lib/ethershelf
After=systemd-networkd.service
StartLimitIntervalSec=60
StartLimitBurst=3
EOF
chroot "$root" systemctl enable systemd-networkd.service ethershelf-network.service ethershelf.service >/dev/null 2>&1
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
if [ -n "$root_password" ]; then
  echo "root:$root_password" | chroot "$root" chpasswd
else
  chroot "$root" passwd -l root >/dev/null
fi
# The package's default shelf.yaml stays in the system partition, under the ESCONFIG mount.
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
rm -f "$root"/boot/vmlinuz-* "$root"/boot/initrd.img-* "$root"/vmlinuz* "$root"/initrd.img*

MiB=$((1024 * 1024))
boot_mib=64 system_mib=1024 config_mib=16 state_mib=256
step "file systems"
# 1: ESBOOT, FAT with SYSLINUX.
mkfs.vfat -n ESBOOT -C "$work/boot.img" $((boot_mib * 1024)) >/dev/null
cat >"$work/syslinux.cfg" <<EOF
DEFAULT ethershelf
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL ethershelf
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=ESSYSTEM ro console=tty0 console=ttyS0,115200n8 quiet loglevel=3 systemd.show_status=error
EOF
printf 'ethershelf appliance %s\n' "$version" >"$work/release.txt"
mmd -i "$work/boot.img" ::/syslinux
mcopy -i "$work/boot.img" "$work/vmlinuz" "$work/initrd.img" "$work/release.txt" ::/
mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::/syslinux/
syslinux --install --directory /syslinux "$work/boot.img"
# 2: ESSYSTEM, ext4 made from the root directory (read-only at run time).
mkfs.ext4 -q -F -L ESSYSTEM -d "$root" -E root_owner=0:0 "$work/system.img" "${system_mib}M"
# 3: ESCONFIG, FAT with shelf.yaml.
mkfs.vfat -n ESCONFIG -C "$work/config.img" $((config_mib * 1024)) >/dev/null
cp "$config" "$work/shelf.yaml"
cat >"$work/README.txt" <<'EOF'
This is the configuration partition (ESCONFIG) of an ethershelf storage shelf.
shelf.yaml here configures the whole box: ports, disks, LUNs, management address.
Edit it from any computer, then boot the shelf. The shelf checks it at boot and says on its
serial console and in its journal what is wrong, if anything.
EOF
mcopy -i "$work/config.img" "$work/shelf.yaml" "$work/README.txt" ::/
# 4: ESSTATE, empty ext4 (mode 0700 for the state directory).
mkdir -m 0700 "$work/state"
mkfs.ext4 -q -F -L ESSTATE -d "$work/state" -E root_owner=0:0 "$work/state.img" "${state_mib}M"

step "disk image"
mkdir -p "$(dirname "$out")"
rm -f "$out.part"
start=2048
layout="label: dos"$'\n'
offset=$start
for spec in "boot:$boot_mib:c:*" "system:$system_mib:83:" "config:$config_mib:c:" "state:$state_mib:83:"; do
  IFS=: read -r name mib type boot <<<"$spec"
  sectors=$((mib * MiB / 512))
  layout+="start=$offset, size=$sectors, type=$type${boot:+, bootable}"$'\n'
  dd if="$work/$name.img" of="$out.part" bs=1M seek=$((offset * 512 / MiB)) conv=sparse,notrunc status=none
  offset=$((offset + sectors))
done
truncate -s $((offset * 512)) "$out.part"
sfdisk --quiet "$out.part" <<<"$layout"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$out.part" bs=440 count=1 conv=notrunc status=none
mv "$out.part" "$out"
used=$(du -k "$out" | cut -f1)
step "done: $out, $(($(stat -c %s "$out") / MiB)) MiB ($((used / 1024)) MiB allocated, sparse), $version"
