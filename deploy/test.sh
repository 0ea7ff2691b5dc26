#!/usr/bin/env bash
# README command 2: the whole test suite (run as root: the lab tests create network
# namespaces and AF_PACKET sockets; the kernel-initiator tests boot a qemu VM; the package
# test installs the .deb into a throwaway Debian 12 root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, raw sockets, qemu)"; exit 2; }
./deploy/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
echo "== tests (unit, property, lab, interop, kernel initiator)"
log=$(mktemp)
artifacts=$(mktemp -d /var/tmp/ethershelf-ci.XXXXXX)
bg=
cleanup() {
  [ -z "$bg" ] || kill -- "-$bg" 2>/dev/null || true
  rm -rf "$log" "$artifacts"
}
trap cleanup EXIT
cargo test --workspace --all-targets --locked --no-run
# While the tests run (most of that time is spent waiting on namespaces and VMs), the release
# binaries, the .deb and the appliance image are built at the lowest CPU and I/O priority, so
# they take only cycles the tests leave idle. The package and image steps below then test
# these very artifacts.
# (Its own session, so that an interrupted run can stop all of it.)
setsid nice -n 19 ionice -c 3 bash -c '
  set -euo pipefail
  deb=$(bash deploy/package.sh | tail -n 1)
  bash deploy/image/build.sh --deb "$deb" --root-password shelfadmin --out "$1/v1.img"' \
  _ "$artifacts" >"$artifacts/build.log" 2>&1 &
bg=$!
set +e
cargo test --workspace --all-targets --locked --no-fail-fast -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== Prometheus rules (promtool check rules/config, promtool test rules)"
./deploy/prometheus/check.sh 2>&1 | tee -a "$log"
rules=${PIPESTATUS[0]}
if ((rules == 0)); then echo "prometheus-rules: 1 passed, 0 failed" | tee -a "$log"; else echo "prometheus-rules: 0 passed, 1 failed" | tee -a "$log"; status=1; fi
echo "== release binaries, package and image built meanwhile"
wait "$bg"
artifacts_ok=$?
bg=
tail -n 3 "$artifacts/build.log"
if ((artifacts_ok != 0)); then
  tail -n 40 "$artifacts/build.log"
  echo "the release build, the package or the image build failed (above)"
fi
echo "== the Debian package (build, lintian, install/upgrade/purge in a Debian 12 root)"
./deploy/package-test.sh 2>&1 | tee -a "$log"
pkg=${PIPESTATUS[0]}
((pkg == 0)) || { echo "package-test: 0 passed, 1 failed" | tee -a "$log"; status=1; }
echo "== the appliance image (build with mmdebstrap, boot in qemu, serve the Linux initiator over two paths)"
image_args=()
[ -f "$artifacts/v1.img" ] && image_args=(--image "$artifacts/v1.img" --out "$artifacts")
./deploy/image/test.sh --smoke "${image_args[@]}" 2>&1 | tee -a "$log"
image=${PIPESTATUS[0]}
if ((image == 0)); then echo "image-smoke: 1 passed, 0 failed" | tee -a "$log"; else echo "image-smoke: 0 passed, 1 failed" | tee -a "$log"; status=1; fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:|^package-test: [0-9]+ passed|^prometheus-rules: [0-9]+ passed|^image-smoke: [0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed[;,]?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
set -e
exit "$status"
