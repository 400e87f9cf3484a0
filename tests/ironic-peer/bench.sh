#!/usr/bin/env bash
# Side-by-side benchmark, Ironic 35.1 vs. coordinator + share agents, on the same simulated
# fleet (see bench.py). Not part of the test suite: an N=100 run takes ~15 min on 2 cores.
#
#   bash tests/ironic-peer/bench.sh [--nodes 20 100 250] [--latency 50ms] [--shares 4]
#
# Needs the workspace binaries built first: cargo build -p irmc-sim -p vmedia -p coordinator -p share-agent
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$HERE/bench.py" "$@"
