"""Checks what our share agent sent to a write_image deploy step against the
code of the real ironic-python-agent package (imported, not copied).

Usage: python check_image_info.py RECORD.jsonl  (the records the hardware
manager in hwm/ wrote; run with that directory on PYTHONPATH). Prints one JSON
object per record:

- ``validation``: "ok", or the error text of IPA's own image_info validation
  (``standby._validate_image_info``), in IPA's wording;
- ``missing``: every image_info key IPA's partition-image code
  (``standby._write_partition_image``) reads and did not find, in the order it
  reads them;
- ``work_on_disk``: the arguments that code hands IPA's partitioner
  (``partition_utils.work_on_disk``): sizes, boot mode and disk label as IPA
  derives them. Only the partitioner itself is replaced (by a recorder): it
  would partition a disk;
- ``configdrive``: what IPA's own ``partition_utils.get_configdrive`` makes of
  the config drive sent (its size and the ISO volume label), or its error.
"""

import json
import sys
import tempfile

from oslo_config import cfg

# IPA's modules read options at import time: register them first, as its
# entry point does.
from ironic_python_agent import agent  # noqa: F401
from ironic_python_agent import errors
from ironic_python_agent import hardware
from ironic_python_agent import partition_utils
from ironic_python_agent.extensions import standby

import vmedia_loop_hwm

# Stand-ins for keys IPA does not find, only so that its code can go on to
# name the next missing key; a missing key is reported whatever stands in.
STAND_INS = {'preserve_ephemeral': False, 'root_mb': 1024, 'swap_mb': 0,
             'ephemeral_mb': 0, 'ephemeral_format': None}


def iso_label(path):
    with open(path, 'rb') as f:
        f.seek(16 * 2048)
        pvd = f.read(2048)
    if pvd[1:6] != b'CD001':
        return None
    return pvd[40:72].decode('ascii', 'replace').strip()


def check(rec):
    info = rec.get('image_info') or {}
    node = rec.get('node') or {}
    out = {'validation': 'ok', 'missing': [], 'work_on_disk': None,
           'configdrive': None}
    try:
        standby._validate_image_info(None, info)
    except errors.InvalidCommandParamsError as e:
        out['validation'] = str(e)

    hardware.NODE = node
    hardware._global_managers = [{
        'name': 'LoopDiskHardwareManager',
        'manager': vmedia_loop_hwm.LoopDiskHardwareManager(),
        'support': hardware.HardwareSupport.SERVICE_PROVIDER}]
    calls = []

    def record(device, root_mb, swap_mb, ephemeral_mb, ephemeral_format,
               image_path, node_uuid, **kwargs):
        calls.append(dict(root_mb=root_mb, swap_mb=swap_mb,
                          ephemeral_mb=ephemeral_mb,
                          ephemeral_format=ephemeral_format,
                          node_uuid=node_uuid,
                          preserve_ephemeral=kwargs.get('preserve_ephemeral'),
                          boot_mode=kwargs.get('boot_mode'),
                          disk_label=kwargs.get('disk_label'),
                          configdrive=kwargs.get('configdrive') is not None))
        return {}

    partition_utils.work_on_disk = record
    probe = dict(info)
    for _ in range(len(STAND_INS) + 1):
        try:
            standby._write_partition_image(None, probe, '/dev/null',
                                           rec.get('configdrive'))
            break
        except KeyError as e:
            key = e.args[0]
            out['missing'].append(key)
            probe[key] = STAND_INS.get(key)
    if calls:
        out['work_on_disk'] = calls[0]

    configdrive = rec.get('configdrive')
    if configdrive:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                size_mb, path = partition_utils.get_configdrive(
                    configdrive, info.get('node_uuid'), tempdir=tmp)
                out['configdrive'] = {'size_mb': size_mb,
                                      'label': iso_label(path)}
        except Exception as e:  # IPA's own error, reported as text
            out['configdrive'] = {'error': '%s: %s' % (type(e).__name__, e)}
    return out


def main():
    cfg.CONF(args=[], project='ironic-python-agent')
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                print(json.dumps(check(json.loads(line))))


if __name__ == '__main__':
    main()
