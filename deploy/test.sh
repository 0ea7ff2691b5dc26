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
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --locked --no-fail-fast -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== Prometheus rules (promtool check rules/config, promtool test rules)"
./deploy/prometheus/check.sh 2>&1 | tee -a "$log"
rules=${PIPESTATUS[0]}
if ((rules == 0)); then echo "prometheus-rules: 1 passed, 0 failed" | tee -a "$log"; else echo "prometheus-rules: 0 passed, 1 failed" | tee -a "$log"; status=1; fi
echo "== the Debian package (build, lintian, install/upgrade/purge in a Debian 12 root)"
./deploy/package-test.sh 2>&1 | tee -a "$log"
pkg=${PIPESTATUS[0]}
((pkg == 0)) || { echo "package-test: 0 passed, 1 failed" | tee -a "$log"; status=1; }
set -e
echo "== the appliance image (build with mmdebstrap, boot in qemu, serve the Linux initiator over two paths)"
./deploy/image/test.sh --smoke 2>&1 | tee -a "$log"
image=${PIPESTATUS[0]}
if ((image == 0)); then echo "image-smoke: 1 passed, 0 failed" | tee -a "$log"; else echo "image-smoke: 0 passed, 1 failed" | tee -a "$log"; status=1; fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:|^package-test: [0-9]+ passed|^prometheus-rules: [0-9]+ passed|^image-smoke: [0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed[;,]?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
