#!/usr/bin/env bash
# Install sushy-tools (PyPI: the Redfish emulator OpenStack tests its Redfish clients
# against) into a venv cached across test processes and print its path (`venv=DIR` on
# the last line). Idempotent: with the pinned version present it only checks the import.
#
#   SUSHY_VENV  venv directory (default: $XDG_CACHE_HOME or ~/.cache, vmedia/sushy-tools-VERSION)
set -euo pipefail
SUSHY_VERSION=2.2.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
VENV="${SUSHY_VENV:-$CACHE/vmedia/sushy-tools-$SUSHY_VERSION}"
# Several test processes may run this at once: one installs, the others wait.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('sushy-tools') != '$SUSHY_VERSION')" 2>/dev/null; then
    timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check "sushy-tools==$SUSHY_VERSION" >&2
fi
"$VENV/bin/python" -c "import sushy_tools.emulator.main" >&2
echo "venv=$VENV"
