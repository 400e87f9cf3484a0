#!/usr/bin/env bash
# Install ironic-python-agent (PyPI) into a venv cached across test processes and print its
# path (`venv=DIR` on the last line). Idempotent: with the pinned version present it only
# checks the import. Shared by the stock-IPA proof (e2e) and the simulator's check of its
# image_info validation against IPA's own (irmc-sim).
#
#   IPA_VENV  venv directory (default: $XDG_CACHE_HOME or ~/.cache, vmedia/ipa-VERSION)
set -euo pipefail
IPA_VERSION=13.0.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
VENV="${IPA_VENV:-$CACHE/vmedia/ipa-$IPA_VERSION}"
# Several test processes may run this at once: one installs, the others wait.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('ironic-python-agent') != '$IPA_VERSION')" 2>/dev/null; then
    timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check "ironic-python-agent==$IPA_VERSION" >&2
fi
"$VENV/bin/python" -c "from ironic_python_agent import config; config.populate_config(); import ironic_python_agent.agent, ironic_python_agent.extensions.standby" >&2
echo "venv=$VENV"
