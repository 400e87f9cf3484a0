#!/usr/bin/env bash
# Set-up, release build, then `vmedia demo` with the given flags (default: 100 nodes, 4 shares).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release --locked -p vmedia -p coordinator -p share-agent -p irmc-sim
exec target/release/vmedia demo "$@"
