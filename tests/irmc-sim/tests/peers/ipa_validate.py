"""Run ironic-python-agent's own image_info checks on JSON cases.

Reads {"md5_enabled": bool, "cases": [image_info, ...]} on stdin; prints one JSON list:
per case null when IPA accepts it, else {"type", "code", "details"} of IPA's error.
Runs with the venv of ipa-setup.sh; imports the real package, changes nothing in it.
"""
import json
import sys

from oslo_config import cfg

from ironic_python_agent import config

# IPA registers its options at start-up (cmd/agent.py); its modules read them on import.
config.populate_config()

from ironic_python_agent import errors  # noqa: E402
from ironic_python_agent.extensions import standby  # noqa: E402


def main():
    req = json.load(sys.stdin)
    conf = cfg.CONF
    conf([], project="ironic-python-agent")
    conf.set_override("md5_enabled", bool(req.get("md5_enabled")))
    out = []
    for case in req["cases"]:
        try:
            standby._validate_image_info(None, image_info=case)
            out.append(None)
        except errors.RESTError as e:
            out.append({"type": e.type, "code": e.code, "details": e.details})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
