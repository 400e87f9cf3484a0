//! The chassis commands: status, control (power), and the boot-flags system boot option
//! (including the iRMC's remotely connected CD/DVD, device 0x20).

use super::*;

// ---------------------------------------------------------------------------
// Chassis commands
// ---------------------------------------------------------------------------

/// Chassis Control actions (request data byte 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChassisControl {
    /// 0: power down (hard off).
    PowerDown,
    /// 1: power up.
    PowerUp,
    /// 2: power cycle.
    PowerCycle,
    /// 3: hard reset.
    HardReset,
    /// 4: pulse diagnostic interrupt (NMI).
    PulseDiagnostic,
    /// 5: soft shutdown via ACPI.
    SoftOff,
}

impl ChassisControl {
    /// The request byte.
    pub fn code(self) -> u8 {
        match self {
            Self::PowerDown => 0,
            Self::PowerUp => 1,
            Self::PowerCycle => 2,
            Self::HardReset => 3,
            Self::PulseDiagnostic => 4,
            Self::SoftOff => 5,
        }
    }

    /// True when sending it twice does what sending it once does.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::PowerDown | Self::PowerUp)
    }
}

/// What Get Chassis Status tells (the parts used here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChassisStatus {
    /// Current power state, bit 0: system power is on.
    pub power_on: bool,
    /// Power fault or interlock bits of byte 1 (bits 1..4).
    pub faults: u8,
}

/// Decodes Get Chassis Status response data.
pub fn parse_chassis_status(data: &[u8]) -> Result<ChassisStatus, DecodeError> {
    match data.first() {
        Some(b) if data.len() >= 3 => Ok(ChassisStatus {
            power_on: b & 0x01 != 0,
            faults: b & 0x1e,
        }),
        _ => bad("chassis status truncated"),
    }
}

/// Boot device selector (boot flags data 2, bits 5:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootDevice {
    /// 0000b: no override.
    NoOverride,
    /// 0001b: PXE.
    Pxe,
    /// 0010b: default hard disk.
    Disk,
    /// 0101b: default CD/DVD.
    Cdrom,
    /// 0110b: BIOS setup.
    BiosSetup,
    /// 1000b: remotely connected CD/DVD: on an iRMC, its virtual CD (data 2 = 0x20).
    RemoteCdrom,
    /// 1011b: remotely connected hard disk.
    RemoteDisk,
    /// Any other selector, raw 4 bits.
    Other(u8),
}

impl BootDevice {
    /// The 4-bit selector.
    pub fn selector(self) -> u8 {
        match self {
            Self::NoOverride => 0x0,
            Self::Pxe => 0x1,
            Self::Disk => 0x2,
            Self::Cdrom => 0x5,
            Self::BiosSetup => 0x6,
            Self::RemoteCdrom => 0x8,
            Self::RemoteDisk => 0xb,
            Self::Other(s) => s & 0x0f,
        }
    }

    /// From the 4-bit selector.
    pub fn from_selector(s: u8) -> Self {
        match s & 0x0f {
            0x0 => Self::NoOverride,
            0x1 => Self::Pxe,
            0x2 => Self::Disk,
            0x5 => Self::Cdrom,
            0x6 => Self::BiosSetup,
            0x8 => Self::RemoteCdrom,
            0xb => Self::RemoteDisk,
            s => Self::Other(s),
        }
    }
}

/// Boot flags (System Boot Options parameter 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootFlags {
    /// Data 1 bit 7: the flags are valid (an override is set).
    pub valid: bool,
    /// Data 1 bit 6: every boot (true) or the next boot only (false).
    pub persistent: bool,
    /// Data 1 bit 5: EFI boot (true) or legacy (false).
    pub efi: bool,
    /// Data 2 bits 5:2.
    pub device: BootDevice,
}

/// Boot options parameter: boot flags.
pub const PARAM_BOOT_FLAGS: u8 = 5;

impl BootFlags {
    /// The five data bytes.
    pub fn encode(self) -> [u8; 5] {
        let d1 = (u8::from(self.valid) << 7)
            | (u8::from(self.persistent) << 6)
            | (u8::from(self.efi) << 5);
        [d1, self.device.selector() << 2, 0, 0, 0]
    }

    /// From the five data bytes.
    pub fn decode(d: &[u8]) -> Result<Self, DecodeError> {
        if d.len() < 2 {
            return bad("boot flags truncated");
        }
        Ok(Self {
            valid: d[0] & 0x80 != 0,
            persistent: d[0] & 0x40 != 0,
            efi: d[0] & 0x20 != 0,
            device: BootDevice::from_selector(d[1] >> 2),
        })
    }
}

/// Set System Boot Options request data for boot flags.
pub fn set_boot_flags_request(flags: BootFlags) -> Vec<u8> {
    let mut v = vec![PARAM_BOOT_FLAGS];
    v.extend_from_slice(&flags.encode());
    v
}

/// Get System Boot Options request data for `param`.
pub fn get_boot_option_request(param: u8) -> [u8; 3] {
    [param & 0x7f, 0, 0]
}

/// Decodes Get System Boot Options response data for boot flags.
pub fn parse_boot_flags_response(data: &[u8]) -> Result<BootFlags, DecodeError> {
    // version, parameter selector (bit 7 = invalid/locked), data
    if data.len() < 3 {
        return bad("boot options response truncated");
    }
    if data[1] & 0x7f != PARAM_BOOT_FLAGS {
        return bad(format!(
            "boot options response for parameter {} instead of 5",
            data[1] & 0x7f
        ));
    }
    BootFlags::decode(&data[2..])
}
