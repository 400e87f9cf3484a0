"""A hardware manager for running stock ironic-python-agent on a test host.

IPA's documented extension point: a class registered under the
``ironic_python_agent.hardware_managers`` entry point whose support level is
above the generic manager's, so IPA asks it first. It presents

- the loop device named by ``VMEDIA_IPA_DISK`` as the only disk (and so the
  install disk), and
- one NIC named by ``VMEDIA_IPA_NIC`` with the MAC in ``VMEDIA_IPA_MAC`` (the
  MAC the node is enrolled with), which is what IPA's lookup sends,

and keeps IPA away from the host's own disks and NICs. Everything else (deploy
steps, image writing, partition handling) stays IPA's own code.

With ``VMEDIA_IPA_RECORD`` set, every ``write_image`` deploy step's ``node``,
``image_info`` and ``configdrive`` are appended to that file (one JSON object a
line) before IPA's own ``write_image`` runs.
"""

import json
import os
import time

from ironic_python_agent import errors
from ironic_python_agent import hardware


def _disk():
    return os.environ['VMEDIA_IPA_DISK']


def _disk_size(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


class LoopDiskHardwareManager(hardware.HardwareManager):
    HARDWARE_MANAGER_NAME = 'vmedia_loop_disk'
    HARDWARE_MANAGER_VERSION = '1.0'

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.SERVICE_PROVIDER

    def list_network_interfaces(self):
        return [hardware.NetworkInterface(
            os.environ.get('VMEDIA_IPA_NIC', 'eth0'),
            os.environ['VMEDIA_IPA_MAC'],
            ipv4_address=os.environ.get('VMEDIA_IPA_IP', '127.0.0.1'),
            has_carrier=True)]

    def list_block_devices(self, include_partitions=False, **kwargs):
        path = _disk()
        return [hardware.BlockDevice(
            name=path, model='vmedia loop disk', size=_disk_size(path),
            rotational=False, serial='vmedia-loop', vendor='vmedia',
            logical_sectors=512, physical_sectors=512)]

    def list_block_devices_check_skip_list(self, node,
                                           include_partitions=False,
                                           **kwargs):
        return self.list_block_devices(include_partitions=include_partitions)

    def get_os_install_device(self, permit_refresh=False):
        path = _disk()
        if not os.path.exists(path):
            raise errors.DeviceNotFound('install disk %s is missing' % path)
        return path

    def wait_for_disks(self):
        # The loop device exists before IPA starts; wait briefly anyway, as
        # the generic manager does for real disks, without touching others.
        for _ in range(50):
            if os.path.exists(_disk()):
                return
            time.sleep(0.1)
        raise errors.DeviceNotFound('install disk %s did not appear'
                                    % _disk())

    def get_cpus(self):
        return hardware.CPU(model_name='vmedia test CPU', frequency='2000',
                            count=os.cpu_count() or 1,
                            architecture='x86_64', flags=[])

    def get_memory(self):
        return hardware.Memory(total=2 << 30, physical_mb=2048)

    def get_bmc_address(self):
        return None

    def get_bmc_v6address(self):
        return None

    def get_bmc_mac(self):
        return None

    def get_system_vendor_info(self):
        return hardware.SystemVendorInfo(
            product_name='vmedia test node', serial_number='vmedia-0',
            manufacturer='vmedia',
            firmware=hardware.SystemFirmware(vendor='vmedia', version='1',
                                             build_date='2026-01-01'))

    def get_boot_info(self):
        return hardware.BootInfo(current_boot_mode=os.environ.get(
            'VMEDIA_IPA_BOOT_MODE', 'bios'))

    def write_image(self, node, ports, image_info, configdrive=None):
        record = os.environ.get('VMEDIA_IPA_RECORD')
        if record:
            with open(record, 'a') as f:
                f.write(json.dumps({'node': node,
                                    'image_info': image_info,
                                    'configdrive': configdrive}) + '\n')
        # Recorded only: IPA's generic manager writes the image.
        raise errors.IncompatibleHardwareMethodError()
