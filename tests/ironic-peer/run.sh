#!/usr/bin/env bash
# One fidelity run: install (or reuse) the cached Ironic 35.1 venv, then deploy a fleet of
# simulated iRMCs with it.
#
#   run.sh [--sim PATH] [harness.py options]
#     --sim PATH      irmc-sim binary (default: target/debug/irmc-sim of this workspace)
#     --bios N --uefi M   nodes per firmware boot mode (default 10 + 10)
#     --fault SPEC    passed to irmc-sim (e.g. latency=50ms); --keep keeps the scratch dir
#
# Prints harness.py's JSON summary on stdout; exit status 0 only when every node is active
# and the simulator-side checks pass. Needs python3 (3.10+), PyPI on first use, and root or
# the tools ipmitool, mkfs.vfat, mcopy, xorriso already installed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIM="$HERE/../../target/debug/irmc-sim"
ARGS=()
while (($#)); do
    case "$1" in
        --sim) SIM="$2"; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ -x "$SIM" ]] || { echo "run.sh: irmc-sim binary $SIM missing (cargo build -p irmc-sim)" >&2; exit 2; }
VENV="$(bash "$HERE/setup.sh" | sed -n 's/^venv=//p' | tail -n1)"
[[ -n "$VENV" ]] || { echo "run.sh: setup.sh did not report a venv" >&2; exit 2; }
exec "$VENV/bin/python" "$HERE/harness.py" --venv "$VENV" --sim "$SIM" "${ARGS[@]}"
