#!/usr/bin/env bash
# Runs stock ironic-python-agent as a node's deploy ramdisk on the test host, as the init
# of its own PID and mount namespaces. Start it with
#
#   unshare --pid --fork --kill-child --mount --propagation private --mount-proc \
#       run-ipa.sh VENV CMDLINE CONFIG WORKDIR
#
# VENV     the venv from ipa-setup.sh
# CMDLINE  the node's kernel command line (what IPA reads from /proc/cmdline)
# CONFIG   an oslo.config file, as a ramdisk image carries in /etc/ironic-python-agent
# WORKDIR  shims go to WORKDIR/shims; every shim call is appended to WORKDIR/shim-calls
#
# IPA must never power off, reboot or set the clock of the host: poweroff, reboot,
# hwclock, ntpdate, chronyd and chronyc are shims that record their call and exit 0 with
# no output (IPA 13.0 falls back to /proc/sysrq-trigger when poweroff fails or prints
# "ignoring request"), and /proc/sysrq-trigger is masked with /dev/null in this mount
# namespace wherever it exists. With VMEDIA_IPA_POWER_OFF_URL set, the poweroff shim
# turns the simulated server off through that URL (the simulator's control API), as a
# real poweroff turns the machine off. Host-changing tools of IPA's generic hardware
# manager (udevadm, modprobe, mdadm, multipathd, iscsistart) are shims too.
set -euo pipefail
VENV=$1 CMDLINE=$2 CONFIG=$3 WORKDIR=$4
HERE=$(cd "$(dirname "$0")" && pwd)
[[ $$ -eq 1 ]] || { echo "run-ipa.sh: must be the init of a new PID namespace (unshare --pid --fork)" >&2; exit 2; }

mount --bind "$CMDLINE" /proc/cmdline
if [[ -e /proc/sysrq-trigger ]]; then
    mount --bind /dev/null /proc/sysrq-trigger
fi
# IPA keeps its generated TLS certificate under /run: a private one.
mount -t tmpfs -o mode=0755 vmedia-ipa-run /run

SHIMS="$WORKDIR/shims"
CALLS="$WORKDIR/shim-calls"
mkdir -p "$SHIMS"
: >>"$CALLS"
shim() { # name exit-code [extra shell line]
    cat >"$SHIMS/$1" <<SHIM
#!/bin/sh
echo "$1 \$*" >>"$CALLS"
${3:-}
exit $2
SHIM
    chmod +x "$SHIMS/$1"
}
for cmd in reboot hwclock ntpdate chronyd chronyc udevadm modprobe mdadm; do
    shim "$cmd" 0
done
# Absent on a plain ramdisk without iSCSI boot or multipath: IPA then skips them.
for cmd in multipathd multipath iscsistart; do
    shim "$cmd" 1
done
shim poweroff 0 '[ -n "${VMEDIA_IPA_POWER_OFF_URL:-}" ] && curl -s -o /dev/null -X POST -H "Content-Type: application/json" -d "{\"action\":\"off\"}" "$VMEDIA_IPA_POWER_OFF_URL" >/dev/null 2>&1 || true'

export PATH="$SHIMS:$PATH"
export PYTHONDONTWRITEBYTECODE=1  # keep the source tree clean
export PYTHONPATH="$HERE/hwm${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/ironic-python-agent" --config-file "$CONFIG"
