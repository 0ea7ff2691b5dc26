#!/usr/bin/env bash
# README command 2: the whole test suite (run as root: the lab tests create network
# namespaces and AF_PACKET sockets; the kernel-initiator tests boot a qemu VM).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, raw sockets, qemu)"; exit 2; }
./deploy/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
echo "== tests (unit, property, lab, interop, kernel initiator)"
cargo test --workspace --locked -- --test-threads 2
