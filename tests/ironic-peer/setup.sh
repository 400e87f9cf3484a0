#!/usr/bin/env bash
# Install OpenStack Ironic 35.1.0 and python-scciclient 0.16.0 from PyPI into a cached venv.
#
# Ironic 35.x (stable/2026.1) is the last release line that still ships the `irmc` hardware
# type. The versions of everything else are pinned by constraints.txt (a `pip freeze` of a
# working venv resolved against the upper-constraints of that release), so two CI runs get
# the same Ironic. Idempotent: when the venv already holds the pinned versions this only
# checks the imports (~1 s).
#
#   IRONIC_PEER_VENV   venv directory (default: $XDG_CACHE_HOME or ~/.cache, vmedia/ironic-peer-35.1.0)
#   PYTHON             interpreter for a new venv (default: python3.11 if present, else python3)
#
# Prints the venv path on its last line (`venv=DIR`). Needs PyPI reachable on first run,
# and the system tools Ironic's irmc driver runs: ipmitool (the hardware type does not load
# without it), mkfs.vfat + mcopy (the virtual floppy). Missing tools are installed with
# apt-get when running as root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IRONIC_VERSION=35.1.0
SCCI_VERSION=0.16.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
VENV="${IRONIC_PEER_VENV:-$CACHE/vmedia/ironic-peer-$IRONIC_VERSION}"

missing=()
command -v ipmitool >/dev/null || missing+=(ipmitool)
command -v mkfs.vfat >/dev/null || missing+=(dosfstools)
command -v mcopy >/dev/null || missing+=(mtools)
command -v xorriso >/dev/null || missing+=(xorriso)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "ironic-peer setup: missing ${missing[*]} and not root" >&2
        exit 3
    fi
    echo "ironic-peer setup: apt-get install ${missing[*]}" >&2
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null; then PYTHON=python3.11; else PYTHON=python3; fi
fi

version_of() {  # version_of DIST -> installed version or nothing
    "$VENV/bin/python" -c 'import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except Exception:
    pass' "$1" 2>/dev/null || true
}

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "ironic-peer setup: creating venv $VENV ($("$PYTHON" --version 2>&1))" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
if [[ "$(version_of ironic)" != "$IRONIC_VERSION" || "$(version_of python-scciclient)" != "$SCCI_VERSION" ]]; then
    echo "ironic-peer setup: pip install ironic==$IRONIC_VERSION python-scciclient==$SCCI_VERSION" >&2
    t0=$SECONDS
    timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check -c "$HERE/constraints.txt" \
        "ironic==$IRONIC_VERSION" "python-scciclient==$SCCI_VERSION" pysnmp-lextudio >&2
    echo "ironic-peer setup: installed in $((SECONDS - t0)) s" >&2
fi

# The irmc driver imports scciclient (which needs the synchronous pysnmp hlapi) lazily:
# import what the conductor will import so a broken venv fails here, not mid-deploy.
timeout 120 "$VENV/bin/python" - >&2 <<'EOF'
from importlib import metadata
import scciclient.irmc.scci, scciclient.irmc.elcm  # noqa: F401
import ironic.drivers.irmc  # noqa: F401
from pysnmp import hlapi
assert hasattr(hlapi, "getCmd"), "pysnmp lacks the synchronous hlapi scciclient imports"
print("ironic-peer setup: ironic %s, python-scciclient %s, sushy %s" % tuple(
    metadata.version(d) for d in ("ironic", "python-scciclient", "sushy")))
EOF
echo "venv=$VENV"
