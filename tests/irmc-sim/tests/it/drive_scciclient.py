"""Drive a simulated iRMC with the reference client, python-scciclient 0.17.0.

Run by scciclient.rs: reads one step name per line on stdin, performs it with the
unmodified library against https://HOST (port 443, as the library never puts a port in
the URL) and prints one JSON line per step, so the Rust side can check the simulator's
state between steps.

The library sleeps 3-5 s after some calls; those fixed sleeps are not protocol, so
they are replaced with a no-op to keep the test fast.

usage: python drive_scciclient.py HOST USER PASSWORD AUTH(basic|digest)
"""

import json
import sys
import warnings

from scciclient.irmc import scci

warnings.filterwarnings("ignore")
scci.time.sleep = lambda _s: None

HOST, USER, PASSWORD, AUTH = sys.argv[1:5]

SHARE = dict(server="127.0.0.1", domain="", share="share", user="ironic", password="s3cret")


def client(password=PASSWORD):
    return scci.get_client(HOST, USER, password, port=443, auth_method=AUTH,
                           client_timeout=10)


def report():
    r = scci.get_report(HOST, USER, PASSWORD, port=443, auth_method=AUTH,
                        client_timeout=10)
    name, fw = scci.get_irmc_version_str(r)
    props = scci.get_essential_properties(r, ["memory_mb", "cpus"])
    return {"name": name, "firmware": fw, "memory_mb": props["memory_mb"],
            "cpus": props["cpus"],
            "virtual_fd": bool(scci.support_virtual_fd_str(name, fw))}


def cd_set(image="deploy.iso"):
    cmd = scci.get_virtual_cd_set_params_cmd(
        SHARE["server"], SHARE["domain"], scci.ShareType.cifs, SHARE["share"],
        image, SHARE["user"], SHARE["password"])
    client()(cmd, do_async=False)


def fd_set(image="image-node.img"):
    cmd = scci.get_virtual_fd_set_params_cmd(
        SHARE["server"], SHARE["domain"], scci.ShareType.nfs, SHARE["share"],
        image, SHARE["user"], SHARE["password"])
    client()(cmd, do_async=False)


def call(cmd, **kw):
    r = client()(cmd, **kw)
    # An eject the library skipped (settings incomplete) returns None.
    return {"posted": r is not None}


STEPS = {
    "report": report,
    "power_on": lambda: call(scci.POWER_ON),
    "power_off": lambda: call(scci.POWER_OFF),
    "power_reset": lambda: call(scci.POWER_RESET),
    "power_cycle": lambda: call(scci.POWER_CYCLE),
    "nmi": lambda: call(scci.POWER_RAISE_NMI),
    "soft_off": lambda: call(scci.POWER_SOFT_OFF),
    "soft_cycle": lambda: call(scci.POWER_SOFT_CYCLE),
    "cd_set": cd_set,
    "mount_cd": lambda: call(scci.MOUNT_CD, do_async=False),
    "unmount_cd": lambda: call(scci.UNMOUNT_CD, do_async=False),
    "fd_set": fd_set,
    "mount_fd": lambda: call(scci.MOUNT_FD, do_async=False),
    "unmount_fd": lambda: call(scci.UNMOUNT_FD, do_async=False),
    "wrong_password": lambda: client("not-the-password")(scci.POWER_ON),
}


def main():
    print(json.dumps({"step": "hello", "ok": True}), flush=True)
    for line in sys.stdin:
        step = line.strip()
        if not step:
            continue
        if step == "quit":
            break
        try:
            result = STEPS[step]()
            out = {"step": step, "ok": True, "result": result}
        except scci.SCCIError as e:
            out = {"step": step, "ok": False, "error": str(e)}
        except Exception as e:  # report, don't die: the Rust side asserts
            out = {"step": step, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
