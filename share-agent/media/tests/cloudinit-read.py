#!/usr/bin/python3
"""Read an extracted config drive tree with cloud-init's own config-drive datasource
code and print what it understood, as JSON, on stdout.

usage: cloudinit-read.py TREE

Runs under Debian's /usr/bin/python3 (the cloud-init package's modules live in its
dist-packages). Prints {"hostname", "public_keys", "userdata", "networkdata",
"network_config", "uuid", "name", "vendordata2"}.
"""
import json
import sys

from cloudinit import sources
from cloudinit.sources import DataSourceConfigDrive
from cloudinit.sources.helpers import openstack


def main():
    tree = sys.argv[1]
    results = DataSourceConfigDrive.read_config_drive(tree)
    md = results["metadata"]
    ud = results.get("userdata") or b""
    if isinstance(ud, bytes):
        ud = ud.decode("utf-8")
    net = results.get("networkdata")
    # This host has no such NICs: name them the way a booted node's kernel would.
    macs = {}
    for i, link in enumerate((net or {}).get("links", [])):
        mac = link.get("ethernet_mac_address")
        if mac:
            macs[mac.lower()] = "eth%d" % i
    out = {
        "version": results.get("version"),
        "hostname": md.get("hostname"),
        "uuid": md.get("uuid"),
        "name": md.get("name"),
        "public_keys": sources.normalize_pubkey_data(md.get("public_keys")),
        "userdata": ud,
        "networkdata": net,
        "network_config": openstack.convert_net_json(
            # It rewrites its argument in place: give it a copy.
            json.loads(json.dumps(net)), known_macs=macs) if net else None,
        "vendordata2": results.get("vendordata2"),
    }
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
