"""A BMC on pyghmi's IPMI server (pyghmi.ipmi.bmc.Bmc), for the irmc crate's peer tests.

Usage: pyghmi_bmc.py ADDRESS PORT USER PASSWORD
Keeps power and boot flags in memory. Prints "ready" once listening, then one line per
change: "power on|off|cycle|reset|diag|shutdown" and "bootflags D1 D2" (hex).

pyghmi knows only the standard boot device selectors; the override below accepts any,
including the iRMC's remotely connected CD/DVD (1000b, data 2 = 0x20), and Get System
Boot Options reports the two bytes that were set.
"""
import sys

import pyghmi.ipmi.bmc as bmc


class Peer(bmc.Bmc):
    def __init__(self, authdata, port, address):
        super().__init__(authdata, port=port, address=address)
        self.power = "off"
        self.flags = [0x00, 0x00]

    def _say(self, text):
        print(text, flush=True)

    def get_power_state(self):
        return self.power

    def power_on(self):
        self.power = "on"
        self._say("power on")

    def power_off(self):
        self.power = "off"
        self._say("power off")

    def power_cycle(self):
        self.power = "on"
        self._say("power cycle")

    def power_reset(self):
        self._say("power reset")

    def pulse_diag(self):
        self._say("power diag")

    def power_shutdown(self):
        self.power = "off"
        self._say("power shutdown")

    def set_system_boot_options(self, request, session):
        data = request["data"]
        if data[0] == 5 and len(data) >= 3:
            self.flags = [data[1], data[2]]
            self._say("bootflags %02x %02x" % (data[1], data[2]))
            return session.send_ipmi_response()
        return super().set_system_boot_options(request, session)

    def get_system_boot_options(self, request, session):
        if request["data"][0] == 5:
            return session.send_ipmi_response(data=[1, 5] + self.flags + [0, 0, 0])
        return super().get_system_boot_options(request, session)


def main():
    address, port, user, password = sys.argv[1:5]
    Peer({user: password}, int(port), address)
    print("ready", flush=True)
    bmc.Bmc.listen()


if __name__ == "__main__":
    main()
