#!/usr/bin/env python3
"""Real OpenStack Ironic 35.1 deploys a fleet of simulated iRMCs (irmc-sim --boot).

One run: build a deploy ISO (BIOS + UEFI El Torito entries) in the share root, render
ironic.conf.in, start the all-in-one `ironic` on a free loopback port with SQLite, start
`irmc-sim --boot` with a share map pointing at Ironic's share root, set each simulated
server's firmware boot mode (Legacy for the BIOS nodes, UEFI for the others) through its
Redfish API, enroll every node through Ironic's REST API, then manage -> provide -> deploy
all of them at once and wait for `active`.

Pass criteria (exit status 0): every node reaches `active`; on the simulator side every node
runs the OS from its local disk, the disk holds exactly the image's sha256, the deploy
ramdisk was booted from the boot loader of the node's mode (isolinux for BIOS, GRUB for
UEFI) with Ironic's own floppy merged, and Ironic's floppy images are gone from the share.

Prints one JSON summary on stdout (timings, CPU, RSS, BMC requests, share bytes); progress
goes to stderr. Everything it starts is stopped by PID / process group on exit.
Standard library only: it runs with the venv's interpreter.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
API_VERSION = "1.80"
BMC_USER = "admin"
BMC_PASSWORD = "irmc-peer-pw"


def log(msg):
    print("%s ironic-peer: %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------- plumbing

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None, headers=None, timeout=30, ctx=None):
    """(status, parsed JSON or raw text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Ironic:
    def __init__(self, url):
        self.url = url
        self.headers = {"X-OpenStack-Ironic-API-Version": API_VERSION}

    def call(self, method, path, body=None, ok=(200, 201, 202, 204), timeout=120):
        status, reply = request(method, self.url + path, body, self.headers, timeout=timeout)
        if status not in ok:
            raise Failure("Ironic %s %s -> HTTP %s: %s" % (method, path, status, reply))
        return reply

    def nodes(self):
        fields = "uuid,name,provision_state,target_provision_state,last_error,power_state"
        return {n["uuid"]: n for n in self.call("GET", "/v1/nodes?fields=" + fields)["nodes"]}


def proc_stats(pgid, split=False):
    """CPU seconds (self + reaped children, e.g. ipmitool) and summed proportional set
    size (KiB; shared pages split among the processes sharing them) of every live process
    in a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = 0.0
    pss = 0
    children = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            cpu += sum(int(x) for x in fields[11:15]) / tick
            children += sum(int(x) for x in fields[13:15]) / tick
            with open("/proc/%s/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    if split:
        return cpu, pss, children
    return cpu, pss


class ProcGroupSampler(threading.Thread):
    """Polls CPU/memory of a process group: the peak is the largest summed PSS seen."""

    def __init__(self, pgid):
        super().__init__(daemon=True)
        self.pgid = pgid
        self.stop = threading.Event()
        self.cpu = 0.0
        self.pss = 0

    def run(self):
        while not self.stop.is_set():
            cpu, pss = proc_stats(self.pgid)
            if cpu or pss:
                self.cpu, self.pss = max(self.cpu, cpu), max(self.pss, pss)
            self.stop.wait(0.5)


def serve_dir(directory):
    """A threaded loopback HTTP server for the disk image; returns (server, port)."""
    handler = lambda *a, **kw: QuietHandler(*a, directory=directory, **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# ---------------------------------------------------------------------------- media

def build_deploy_iso(path, work):
    """A deploy ISO shaped like ironic-python-agent-builder's: isolinux (BIOS El Torito
    entry) and GRUB in an EFI system image (UEFI entry), both booting a kernel with
    `boot_method=vmedia` so IPA reads parameters.txt from the virtual floppy."""
    root = os.path.join(work, "iso-root")
    os.makedirs(os.path.join(root, "isolinux"))
    os.makedirs(os.path.join(root, "boot", "grub"))
    # Stand-ins for the kernel and initramfs: the simulated firmware reads the boot loader
    # configuration, not the kernel.
    for name in ("vmlinuz", "initrd"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(hashlib.sha256(name.encode()).digest() * 64)
    args = "nofb nomodeset vga=normal boot_method=vmedia ipa-debug=1"
    with open(os.path.join(root, "isolinux", "isolinux.cfg"), "w") as f:
        f.write("default deploy\ntimeout 5\nlabel deploy\n  kernel /vmlinuz\n"
                "  append initrd=/initrd text %s --\n" % args)
    grub_cfg = ("set default=0\nset timeout=5\nmenuentry \"deploy\" {\n"
                "  linux /vmlinuz %s --\n  initrd /initrd\n}\n" % args)
    with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
        f.write(grub_cfg)
    for src, dst in (("/usr/lib/ISOLINUX/isolinux.bin", "isolinux.bin"),
                     ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "ldlinux.c32")):
        if not os.path.exists(src):
            raise Failure("%s is missing (Debian packages isolinux, syslinux-common)" % src)
        shutil.copy(src, os.path.join(root, "isolinux", dst))
    # EFI system image: FAT holding EFI/BOOT/BOOTX64.EFI (a standalone GRUB when the
    # tools exist; the simulated firmware only needs the El Torito entry to be bootable).
    efi = os.path.join(work, "BOOTX64.EFI")
    embed = os.path.join(work, "grub-embed.cfg")
    with open(embed, "w") as f:
        f.write("search --no-floppy --set=root --file /boot/grub/grub.cfg\n"
                "configfile /boot/grub/grub.cfg\n")
    if shutil.which("grub-mkstandalone") and os.path.isdir("/usr/lib/grub/x86_64-efi"):
        subprocess.run(["grub-mkstandalone", "-O", "x86_64-efi", "--modules=iso9660 fat part_gpt"
                        " part_msdos search search_fs_file linux normal configfile",
                        "-o", efi, "boot/grub/grub.cfg=" + embed],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with open(efi, "wb") as f:
            f.write(b"MZ" + bytes(4094))
    efiboot = os.path.join(root, "efiboot.img")
    size_kib = max(1440, (os.path.getsize(efi) // 1024 + 256))
    subprocess.run(["mkfs.vfat", "-C", "-n", "EFIBOOT", efiboot, str(size_kib)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for d in ("::EFI", "::EFI/BOOT"):
        subprocess.run(["mmd", "-i", efiboot, d], check=True)
    subprocess.run(["mcopy", "-i", efiboot, efi, "::EFI/BOOT/BOOTX64.EFI"], check=True)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", path, "-V", "IPA_DEPLOY", "-J",
                    "-R", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                    "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                    "-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot", root],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_disk_image(path, size):
    """Deterministic, incompressible-looking bytes; returns (md5, sha256)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    seed = b"ironic-peer-disk"
    with open(path, "wb") as f:
        written = 0
        while written < size:
            seed = hashlib.sha256(seed).digest()
            block = seed * 2048  # 64 KiB
            chunk = block[: size - written]
            f.write(chunk)
            md5.update(chunk)
            sha.update(chunk)
            written += len(chunk)
    return md5.hexdigest(), sha.hexdigest()


# ---------------------------------------------------------------------------- processes

class Procs:
    """Everything started here, stopped in reverse order by process group."""

    def __init__(self):
        self.items = []

    def start(self, name, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.items.append((name, p))
        return p

    def stop_all(self):
        # In start order: Ironic before the simulator, so that Ironic does not log
        # connection errors against iRMCs that are already gone.
        for name, p in self.items:
            if p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                # Ironic waits up to [DEFAULT]graceful_shutdown_timeout for running tasks.
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=15)


def start_ironic(procs, venv, run, share_root, periodic, cb_timeout, debug):
    port = free_port()
    with open(os.path.join(HERE, "ironic.conf.in")) as f:
        conf = f.read()
    for k, v in {"@RUN@": run, "@SHARE_ROOT@": share_root, "@API_PORT@": str(port),
                 "@PERIODIC@": str(periodic), "@CB_TIMEOUT@": str(cb_timeout),
                 "@DEBUG@": "True" if debug else "False"}.items():
        conf = conf.replace(k, v)
    for d in ("state", "tmp", "locks", "httpboot"):
        os.makedirs(os.path.join(run, d), exist_ok=True)
    conf_path = os.path.join(run, "ironic.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    bindir = os.path.join(venv, "bin")
    with open(os.path.join(run, "dbsync.log"), "w") as out:
        subprocess.run([os.path.join(bindir, "ironic-dbsync"), "--config-file", conf_path,
                        "create_schema"], check=True, stdout=out, stderr=out, timeout=180)
    env = dict(os.environ)
    # ipmitool and the FAT tools come from PATH; keep the venv's bin first.
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    out = open(os.path.join(run, "ironic.stdout"), "w")
    p = procs.start("ironic", [os.path.join(bindir, "ironic"), "--config-file", conf_path],
                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    api = Ironic("http://127.0.0.1:%d" % port)
    t0 = time.time()
    while True:
        if p.poll() is not None:
            raise Failure("ironic exited with %s; see %s/ironic.log" % (p.returncode, run))
        try:
            st, drivers = request("GET", api.url + "/v1/drivers", headers=api.headers, timeout=3)
            if st == 200 and any(d.get("name") == "irmc" for d in drivers.get("drivers", [])):
                break
        except OSError:
            pass
        if time.time() - t0 > 120:
            raise Failure("Ironic did not register the irmc driver within 120 s")
        time.sleep(0.3)
    log("ironic up at %s (pid %d) after %.1f s" % (api.url, p.pid, time.time() - t0))
    return api, p


def start_sim(procs, sim_bin, run, count, share_root, faults, base, extra):
    pw = os.path.join(run, "bmc-password")
    with open(pw, "w") as f:
        f.write(BMC_PASSWORD + "\n")
    argv = [sim_bin, "--count", str(count), "--base-address", base, "--https-port", "443",
            "--username", BMC_USER, "--password-file", pw, "--boot",
            "--share-map", "127.0.0.1/share=" + share_root,
            "--control", "127.0.0.1:0", "--json"]
    for f in faults:
        argv += ["--fault", f]
    argv += extra
    err = open(os.path.join(run, "irmc-sim.log"), "w")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env["NO_COLOR"] = "1"
    p = procs.start("irmc-sim", argv, stdout=subprocess.PIPE, stderr=err,
                    stdin=subprocess.DEVNULL, env=env)
    line = p.stdout.readline()
    if not line:
        p.wait(timeout=10)
        raise Failure("irmc-sim exited (%s) before it was ready; see %s/irmc-sim.log"
                      % (p.returncode, run))
    ready = json.loads(line)
    log("irmc-sim up: %d nodes from %s, control %s" % (len(ready["nodes"]), base,
                                                       ready["control"]))
    return ready, p


# ---------------------------------------------------------------------------- the run

def wait_states(api, uuids, want, timeout, bad=("deploy failed", "clean failed", "error"),
                on_poll=None):
    """Wait until every node is in `want`; raise on a failed state or timeout. `on_poll` is
    called once per poll (about once a second)."""
    t0 = time.time()
    last = {}
    while True:
        nodes = api.nodes()
        done = 0
        for u in uuids:
            n = nodes[u]
            st = (n["provision_state"], n["target_provision_state"])
            if last.get(u) != st:
                last[u] = st
            if n["provision_state"] == want:
                done += 1
            elif n["provision_state"] in bad:
                raise Failure("node %s (%s) went to %r: %s" % (
                    n["name"], u, n["provision_state"], n["last_error"]))
        if on_poll:
            on_poll()
        if done == len(uuids):
            return time.time() - t0
        if time.time() - t0 > timeout:
            stuck = {nodes[u]["name"]: "%s/%s: %s" % (nodes[u]["provision_state"],
                                                      nodes[u]["target_provision_state"],
                                                      nodes[u]["last_error"])
                     for u in uuids if nodes[u]["provision_state"] != want}
            raise Failure("%d of %d nodes not %r after %d s: %s" % (
                len(stuck), len(uuids), want, timeout, json.dumps(stuck)[:3000]))
        time.sleep(1)


def provision_all(api, uuids, target):
    """Request a provision state change for every node, a few requests at a time: Ironic
    validates each request synchronously in the API (~1-2 s per node here), and its single
    API worker resets connections beyond a handful of concurrent ones. A reset request is
    retried unless the node already moved."""
    path = "/v1/nodes/%s/states/provision"

    def state(u):
        return api.call("GET", "/v1/nodes/%s?fields=provision_state" % u)["provision_state"]

    def one(u):
        before = state(u)
        last = None
        for attempt in range(6):
            try:
                api.call("PUT", path % u, {"target": target})
                return
            except (OSError, Failure) as e:
                # A timed-out or reset request may still have been carried out.
                last = e
                time.sleep(1 + attempt)
                if state(u) != before:
                    return
        raise Failure("PUT %s target=%s kept failing: %s" % (path % u, target, last))

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, len(uuids))) as pool:
        list(pool.map(one, uuids))


def count_lines(path, needle):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if needle in line)
    except OSError:
        return 0


def sync_scci(counters):
    """scciclient calls made with do_async=False during a deploy: for each of CD and FD the
    parameter CMDSEQ (9 ConfigSpace items: 1Ax0-1Ax6, drive count, 1A80) and the connect.
    Ejects are asynchronous."""
    attaches = counters.get("scci", {}).get("ConfigSpace", 0) // 9
    return 2 * attaches


def power_scci(counters):
    scci = counters.get("scci", {})
    return sum(scci.get(k, 0) for k in ("PowerOnCabinet", "PowerOffCabinet", "ResetServer"))


def node_mac(ip):
    # irmc-sim derives each simulated server's NIC address from its BMC address.
    o = [int(x) for x in ip.split(".")]
    return "52:54:%02x:%02x:%02x:%02x" % tuple(o)


def share_bytes(share_root, names):
    total = 0
    for n in names:
        try:
            total += os.path.getsize(os.path.join(share_root, n))
        except OSError:
            pass
    return total


def show_logs(run):
    """The lines that explain a failure: Ironic's errors and the simulator's warnings."""
    for name, keep, n in (("ironic.log", (" ERROR ", "Traceback"), 40),
                          ("irmc-sim.log", ("WARN", "ERROR"), 30)):
        try:
            with open(os.path.join(run, name), errors="replace") as f:
                lines = [line.rstrip() for line in f if any(k in line for k in keep)]
        except OSError:
            continue
        if lines:
            print("--- last %s lines of %s ---" % (min(n, len(lines)), name), file=sys.stderr)
            print("\n".join(line[:400] for line in lines[-n:]), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", required=True)
    ap.add_argument("--sim", required=True, help="irmc-sim binary")
    ap.add_argument("--bios", type=int, default=10, help="nodes deployed in BIOS mode")
    ap.add_argument("--uefi", type=int, default=10, help="nodes deployed in UEFI mode")
    ap.add_argument("--partition-bios", type=int, default=0,
                    help="nodes deployed with a partition image in BIOS mode")
    ap.add_argument("--partition-uefi", type=int, default=0,
                    help="nodes deployed with a partition image in UEFI mode")
    ap.add_argument("--checksum", choices=("md5", "sha256"), default="md5",
                    help="the image_checksum the nodes are enrolled with")
    ap.add_argument("--share-root", default="/dev/shm",
                    help="[irmc]remote_image_share_root (must be a mount point)")
    ap.add_argument("--image-size", type=int, default=4 << 20)
    ap.add_argument("--fault", action="append", default=[], help="irmc-sim --fault SPEC")
    ap.add_argument("--sim-arg", action="append", default=[],
                    help="extra irmc-sim argument, e.g. --sim-arg=--fast-ramdisk")
    ap.add_argument("--periodic", type=int, default=10)
    ap.add_argument("--callback-timeout", type=int, default=600)
    ap.add_argument("--timeout", type=int, default=900, help="deploy phase limit, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--debug", action="store_true", help="Ironic debug logging")
    a = ap.parse_args()

    # Node kinds in index order: (firmware boot mode, image type).
    kinds = ([("bios", "whole-disk")] * a.bios + [("uefi", "whole-disk")] * a.uefi +
             [("bios", "partition")] * a.partition_bios +
             [("uefi", "partition")] * a.partition_uefi)
    total = len(kinds)
    if total < 1:
        raise Failure("nothing to deploy")
    if not os.path.ismount(a.share_root):
        raise Failure("%s is not a mount point: Ironic's irmc-virtual-media boot interface "
                      "refuses to load (IRMCSharedFileSystemNotMounted)" % a.share_root)
    run = tempfile.mkdtemp(prefix="ironic-peer-")
    runid = os.path.basename(run)
    iso_name = "%s-deploy.iso" % runid
    iso_path = os.path.join(a.share_root, iso_name)
    procs = Procs()
    uuids = []
    summary = {"bios_nodes": a.bios, "uefi_nodes": a.uefi,
               "partition_nodes": a.partition_bios + a.partition_uefi, "scratch": run}
    ok = False
    try:
        t_setup = time.time()
        build_deploy_iso(iso_path, run)
        img_dir = os.path.join(run, "images")
        os.makedirs(img_dir)
        img_md5, img_sha = write_disk_image(os.path.join(img_dir, "disk.img"), a.image_size)
        # A partition image's kernel and ramdisk (Ironic passes their references on).
        for name in ("vmlinuz", "initrd"):
            with open(os.path.join(img_dir, name), "wb") as f:
                f.write(hashlib.sha256(name.encode()).digest() * 64)
        img_srv, img_port = serve_dir(img_dir)
        api, ironic = start_ironic(procs, a.venv, run, a.share_root, a.periodic,
                                   a.callback_timeout, a.debug)
        ironic_sampler = ProcGroupSampler(ironic.pid)
        ironic_sampler.start()
        # A random 127.X.Y.1 base (Y >= 100: other fleets on this machine count up from
        # 127.R.0.1) so parallel runs do not collide; a taken address means another base.
        rnd = random.Random()
        for attempt in range(3):
            base = "127.%d.%d.1" % (rnd.randint(16, 250), rnd.randint(100, 199))
            try:
                ready, sim = start_sim(procs, a.sim, run, total, a.share_root, a.fault,
                                       base, a.sim_arg)
                break
            except Failure:
                if attempt == 2:
                    raise
        control = "http://" + ready["control"]
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        auth = "Basic " + base64.b64encode(
            ("%s:%s" % (BMC_USER, BMC_PASSWORD)).encode()).decode()

        nodes = []  # (uuid, name, ip, index, mode)
        node_kind = {}  # uuid -> "whole-disk bios" | "partition uefi" ...
        for sim_node in ready["nodes"]:
            i, ip = sim_node["index"], sim_node["address"]
            mode, image_type = kinds[i]
            # The server's firmware boot mode is a BIOS setting an operator makes once;
            # Ironic's irmc management interface does not set it (set_boot_mode is
            # unsupported), so configure it through the iRMC's own Redfish API.
            st, body = request("PATCH", "https://%s/redfish/v1/Systems/0" % ip,
                            {"Boot": {"BootSourceOverrideMode":
                                      "Legacy" if mode == "bios" else "UEFI"}},
                            {"Authorization": auth}, ctx=insecure)
            if st not in (200, 204):
                raise Failure("setting the boot mode of %s: HTTP %s %s" % (ip, st, body))
            instance_info = {
                "image_source": "http://127.0.0.1:%d/disk.img" % img_port,
                "image_checksum": img_md5 if a.checksum == "md5" else img_sha,
                "image_disk_format": "raw",
            }
            if image_type == "partition":
                # Ironic's partition-image fields (a kernel/ramdisk pair makes the image a
                # partition image); the image's layout comes from the flavor in Nova.
                instance_info.update({
                    "kernel": "http://127.0.0.1:%d/vmlinuz" % img_port,
                    "ramdisk": "http://127.0.0.1:%d/initrd" % img_port,
                    "root_gb": 1, "swap_mb": 64, "ephemeral_gb": 1,
                    "preserve_ephemeral": False,
                })
            n = api.call("POST", "/v1/nodes", {
                "name": "%s-%s-%s-%03d" % (runid[-8:], mode, image_type[0], i),
                "driver": "irmc",
                "automated_clean": False,
                "properties": {"cpu_arch": "x86_64", "memory_mb": 4096, "local_gb": 10,
                               "cpus": 2, "capabilities": "boot_mode:%s" % mode},
                "driver_info": {
                    "irmc_address": ip, "irmc_username": BMC_USER,
                    "irmc_password": BMC_PASSWORD, "irmc_port": 443,
                    "irmc_auth_method": "basic", "irmc_verify_ca": False,
                    "redfish_address": "https://" + ip,
                    "redfish_system_id": "/redfish/v1/Systems/0",
                    "redfish_username": BMC_USER, "redfish_password": BMC_PASSWORD,
                    "redfish_verify_ca": False,
                    "deploy_iso": iso_name,
                },
                "instance_info": instance_info,
            })
            api.call("POST", "/v1/ports", {"node_uuid": n["uuid"], "address": node_mac(ip)})
            nodes.append((n["uuid"], n["name"], ip, i, mode))
            node_kind[n["uuid"]] = "%s %s" % (image_type, mode)
        uuids = [n[0] for n in nodes]
        log("enrolled %d nodes (%d BIOS, %d UEFI, %d partition)"
            % (total, a.bios, a.uefi, a.partition_bios + a.partition_uefi))
        cpu_enroll, _ = proc_stats(ironic.pid)

        t = time.time()
        provision_all(api, uuids, "manage")
        summary["manage_s"] = round(wait_states(api, uuids, "manageable", 300), 1)
        provision_all(api, uuids, "provide")
        wait_states(api, uuids, "available", 300)
        summary["enroll_to_available_s"] = round(time.time() - t, 1)
        summary["setup_s"] = round(time.time() - t_setup, 1)
        log("all %d nodes available after %.1f s" % (total, time.time() - t))

        # Deploy: the measured phase.
        st, counters = request("GET", control + "/counters")
        bmc_before = counters.get("total", {}) if isinstance(counters, dict) else {}
        request("POST", control + "/counters/reset")
        cpu0, _, child0 = proc_stats(ironic.pid, split=True)
        ipmi0 = count_lines(os.path.join(run, "ironic.log"), "IPMI Error while attempting")
        sim_cpu0, _ = proc_stats(sim.pid)
        floppy = {}

        def watch_share():
            # Ironic writes image-<uuid>.img per node and deletes it in prepare_instance.
            for u in uuids:
                try:
                    floppy[u] = max(floppy.get(u, 0),
                                    os.path.getsize(os.path.join(a.share_root,
                                                                 "image-%s.img" % u)))
                except OSError:
                    pass

        t0 = time.time()
        provision_all(api, uuids, "active")
        summary["deploy_requests_s"] = round(time.time() - t0, 2)
        log("deploy requested for %d nodes" % total)
        summary["deploy_wall_s"] = round(wait_states(api, uuids, "active", a.timeout,
                                                     on_poll=watch_share) +
                                         summary["deploy_requests_s"], 1)
        cpu1, _, child1 = proc_stats(ironic.pid, split=True)
        ipmi1 = count_lines(os.path.join(run, "ironic.log"), "IPMI Error while attempting")
        sim_cpu1, _ = proc_stats(sim.pid)
        log("all %d nodes active %.1f s after the first deploy request"
            % (total, summary["deploy_wall_s"]))
        st, counters = request("GET", control + "/counters")
        bmc_total = counters.get("total", {}) if isinstance(counters, dict) else {}

        # The simulator's view: OS running from a disk holding exactly the image.
        problems = []
        write_args = {}
        with open(os.path.join(run, "irmc-sim.log")) as f:
            sim_log = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
        for u, name, ip, i, mode in nodes:
            st, view = request("GET", "%s/nodes/%d" % (control, i))
            if st != 200 or not isinstance(view, dict):
                problems.append("%s: control API HTTP %s" % (name, st))
                continue
            s = view.get("state") or {}
            if not s.get("os_running"):
                problems.append("%s: OS not running (last boot %s)" % (name, s.get("last_boot")))
            if (s.get("disk") or {}).get("sha256") != img_sha:
                problems.append("%s: disk %s, expected sha256 %s" % (name, s.get("disk"), img_sha))
            if s.get("power") != "On":
                problems.append("%s: power %s" % (name, s.get("power")))
            if os.path.exists(os.path.join(a.share_root, "image-%s.img" % u)):
                problems.append("%s: floppy image-%s.img left on the share" % (name, u))
            # The write_image arguments Ironic sent, as the simulated ramdisk received them
            # (one node of each kind).
            args = (s.get("labels") or {}).get("ipa_write_image_args")
            if args is None:
                problems.append("%s: the ramdisk recorded no write_image arguments" % name)
            else:
                write_args.setdefault(node_kind[u], json.loads(args))
        # The ramdisk booted through the loader of each node's mode, with the floppy merged.
        want_cfg = {"bios": "/isolinux/isolinux.cfg", "uefi": "/boot/grub/grub.cfg"}
        for u, name, ip, i, mode in nodes:
            hit = [line for line in sim_log.splitlines()
                   if "virtual CD booted" in line and ("bmc=%s " % ip) in line]
            if not hit:
                problems.append("%s: no deploy ramdisk boot in the simulator log" % name)
            elif not all(("config=%s" % want_cfg[mode]) in h and "vmedia_params=true" in h
                         for h in hit):
                problems.append("%s (%s): booted with %s" % (name, mode, hit))
        if problems:
            raise Failure("simulator-side checks failed:\n  " + "\n  ".join(problems))

        per = max(total, 1)
        summary.update({
            "nodes": total,
            "active": total,
            "ironic_cpu_s_per_deploy": round((cpu1 - cpu0) / per, 3),
            # ipmitool, mkfs.vfat, mcopy ... run by the conductor (reaped children).
            "ironic_cpu_s_per_deploy_subprocesses": round((child1 - child0) / per, 3),
            "ipmitool_failures_per_deploy": round((ipmi1 - ipmi0) / per, 1),
            # Over the whole run (enroll, manage, provide, deploy): the simulator serves
            # IPMI-over-LAN, so every ipmitool call Ironic makes must succeed.
            "ipmitool_failures_total": ipmi1,
            "bmc_ipmi_datagrams_per_deploy": round(bmc_total.get("ipmi_packets", 0) / per, 1),
            # scciclient sleeps 5 s after every synchronous call (virtual media set-up and
            # connect) and 3 s after every power-on/off/reset.
            "scciclient_sleep_s_per_deploy": round(
                (5 * sync_scci(bmc_total) + 3 * power_scci(bmc_total)) / per, 1),
            "ironic_cpu_s_per_node_enroll_to_active": round((cpu1 - cpu_enroll) / per, 3),
            "ironic_cpu_s_total_run": round(cpu1, 1),
            "ironic_peak_pss_mib": round(ironic_sampler.pss / 1024, 1),
            "sim_cpu_s_per_deploy": round((sim_cpu1 - sim_cpu0) / per, 3),
            "bmc_requests_per_deploy": round(bmc_total.get("total", 0) / per, 1),
            "bmc_counters_total": bmc_total,
            # Ironic writes the floppy (removed again) and reads the shared deploy ISO.
            "share_bytes_per_node_floppy": max(floppy.values()) if floppy else None,
            "floppies_seen": len(floppy),
            "bmc_requests_per_node_enroll_to_available": round(
                bmc_before.get("total", 0) / per, 1),
            "deploy_iso_bytes": os.path.getsize(iso_path),
            "image_bytes": a.image_size,
            # "whole-disk bios" -> {"image_info": {...}, "configdrive": ...}
            "write_image_args": write_args,
        })
        ok = True
    finally:
        procs.stop_all()
        for u in uuids:
            try:
                os.unlink(os.path.join(a.share_root, "image-%s.img" % u))
            except OSError:
                pass
        try:
            os.unlink(iso_path)
        except OSError:
            pass
        if ok and not a.keep:
            shutil.rmtree(run, ignore_errors=True)
        else:
            if not ok:
                show_logs(run)
            log("scratch directory kept: %s (ironic.log, irmc-sim.log)" % run)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    # SIGTERM/SIGINT unwind through main's `finally`, which stops Ironic and the simulator.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        main()
    except Failure as e:
        log("FAILED: %s" % e)
        sys.exit(1)
