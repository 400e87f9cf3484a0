#!/usr/bin/env bash
# Install pyghmi (PyPI) into a venv cached across test processes and print its path
# (`venv=DIR` on the last line). Idempotent: with the pinned version present it only checks
# the import.
#
#   PYGHMI_VENV  venv directory (default: $XDG_CACHE_HOME or ~/.cache, vmedia/pyghmi-VERSION)
set -euo pipefail
PYGHMI_VERSION=1.6.19
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
VENV="${PYGHMI_VENV:-$CACHE/vmedia/pyghmi-$PYGHMI_VERSION}"
# Several test processes may run this at once: one installs, the others wait.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('pyghmi') != '$PYGHMI_VERSION')" 2>/dev/null; then
    timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check "pyghmi==$PYGHMI_VERSION" >&2
fi
"$VENV/bin/python" -c "import pyghmi.ipmi.bmc" >&2
echo "venv=$VENV"
