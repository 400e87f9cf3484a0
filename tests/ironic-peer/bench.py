#!/usr/bin/env python3
"""Side-by-side benchmark: the same simulated iRMC fleet (irmc-sim --boot --fast-ramdisk,
same injected BMC latency, 200 ms simulated boot) deployed by

  * Ironic 35.1 (irmc power/management, irmc-virtual-media boot, direct deploy), through
    harness.py, and
  * our coordinator + share agents, through `vmedia demo --json`.

For each fleet size it prints one JSON line per side and, at the end, a Markdown table.
Peak memory is the summed proportional set size (PSS) of each side's processes, sampled
every 0.5 s (the driving CLI and the simulator excluded).
Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def children_map():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append((int(pid), comm))
    return kids


def tree_rss_kib(root, exclude=("irmc-sim",)):
    """Summed current PSS of the descendants of `root` (the driving CLI itself is not
    counted), minus the subtrees of excluded process names."""
    kids = children_map()
    total, stack = 0, [c for c, comm in kids.get(root, []) if comm not in exclude]
    while stack:
        pid = stack.pop()
        for child, comm in kids.get(pid, []):
            if comm not in exclude:
                stack.append(child)
        total += pss_kib(pid)
    return total


def pss_kib(pid):
    """Proportional set size: pages shared between processes (a conductor's fork before
    it execs ipmitool, a master and its workers) are split among them instead of being
    counted once per process as RSS would."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid, exclude):
        super().__init__(daemon=True)
        self.pid, self.exclude, self.peak = pid, exclude, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss_kib(self.pid, self.exclude))
            self.stop.wait(0.5)


def run_side(argv, exclude, env=None):
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    s = Sampler(p.pid, exclude)
    s.start()
    out, err = p.communicate()
    s.stop.set()
    s.join()
    line = next((l for l in reversed(out.decode().splitlines()) if l.startswith("{")), None)
    if p.returncode != 0 or line is None:
        sys.stderr.write(err.decode()[-4000:])
        raise SystemExit("bench: %s failed (exit %s)" % (argv[0], p.returncode))
    return json.loads(line), s.peak, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--latency", default="50ms", help="irmc-sim fault latency per BMC request")
    ap.add_argument("--shares", type=int, default=4, help="share agents on our side")
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "..", "target", "debug"))
    ap.add_argument("--skip-ironic", action="store_true")
    a = ap.parse_args()
    sim = os.path.join(a.bin_dir, "irmc-sim")
    vmedia = os.path.join(a.bin_dir, "vmedia")
    rows = []
    for n in a.nodes:
        ours, ours_rss, _ = run_side(
            [vmedia, "demo", "--nodes", str(n), "--shares", str(a.shares), "--json",
             "--timeout", "60m", "--sim-arg=--fault", "--sim-arg=latency=%s" % a.latency],
            exclude=("irmc-sim",))
        ours["peak_pss_mib"] = round(ours_rss / 1024, 1)
        print(json.dumps({"side": "vmedia", "nodes": n, **ours}), flush=True)
        if a.skip_ironic:
            continue
        iro, iro_rss, iro_total = run_side(
            ["bash", os.path.join(HERE, "run.sh"), "--sim", sim, "--bios", "0", "--uefi",
             str(n), "--fault", "latency=%s" % a.latency, "--sim-arg=--fast-ramdisk",
             "--timeout", "7200", "--callback-timeout", "3600"],
            exclude=("irmc-sim",))
        iro["peak_pss_mib"] = round(iro_rss / 1024, 1)
        iro["harness_total_s"] = round(iro_total, 1)
        print(json.dumps({"side": "ironic", **iro}), flush=True)
        pn = ours["per_node"]
        ours_cpu = (pn["cpu_ms_coordinator"] + pn["cpu_ms_agents"]) / 1000.0
        rows.append((n, iro, ours, ours_cpu))

    print()
    print("| nodes | deploy wall s (Ironic / ours / ratio) | CPU s per node, enroll to active "
          "(Ironic / ours / ratio) | BMC requests per node (Ironic / ours) | share bytes "
          "per node (Ironic / ours) | peak PSS MiB (Ironic / ours) |")
    print("|---|---|---|---|---|---|")
    for n, iro, ours, ours_cpu in rows:
        iro_cpu = iro["ironic_cpu_s_per_node_enroll_to_active"]
        iro_bmc = iro["bmc_requests_per_node_enroll_to_available"] + iro["bmc_requests_per_deploy"]
        print("| %d | %.1f / %.1f / %.0fx | %.2f / %.3f / %.0fx | %.1f / %.1f | %s / %.0f | %.0f / %.0f |" % (
            n, iro["deploy_wall_s"], ours["deploy_s"], iro["deploy_wall_s"] / max(ours["deploy_s"], 1e-3),
            iro_cpu, ours_cpu, iro_cpu / max(ours_cpu, 1e-6), iro_bmc,
            ours["per_node"]["bmc_requests"] or 0,
            iro["share_bytes_per_node_floppy"], ours["per_node"]["share_bytes_allocated"],
            iro["peak_pss_mib"], ours["peak_pss_mib"]))


if __name__ == "__main__":
    main()
