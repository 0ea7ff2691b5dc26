#!/usr/bin/env bash
# Installs what ethershelf needs on Debian 12: build tools, the lab's peers (vblade, aoetools,
# tshark, fio), what the Linux-initiator VM harness (deploy/vm) needs (qemu, a static busybox,
# cpio, xz, kmod, python3, and its cached kernel + initramfs), the front-panel and Prometheus
# tests' chromium and prometheus, the appliance image's builders (mmdebstrap, syslinux, mtools,
# dosfstools), and a Rust toolchain if none is present. Idempotent: packages already installed are skipped quickly.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(build-essential pkg-config iproute2 vblade aoetools tshark fio
          qemu-system-x86 busybox-static cpio xz-utils kmod python3 procps fonts-dejavu-core fuse3
          libhwloc-dev libudev-dev iputils-ping curl systemd bsdutils
          chromium prometheus mmdebstrap syslinux syslinux-common mtools dosfstools fdisk e2fsprogs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  apt-get update -qq
  # Packages with services (prometheus) must not start them on this machine: the tests run
  # their own instances inside lab namespaces. policy-rc.d says so for the install only.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "== installing the Rust toolchain with rustup"
    apt-get install -y -qq curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
# The RAID fault tests mount a FUSE filesystem.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || echo "warning: /dev/fuse is missing (modprobe fuse): the RAID EIO tests will fail"
# The VM harness's Debian kernel and initramfs (downloaded and built once, then cached).
"$(dirname "$0")/vm/initiator.sh" --prepare >/dev/null
echo "== dependencies ready ($(cargo --version))"
