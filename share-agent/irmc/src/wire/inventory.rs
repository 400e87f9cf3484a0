//! Out-of-band inventory: what `/report.xml` says about the server's hardware, and the
//! NIC MACs from Redfish's `EthernetInterfaces` (DMTF `EthernetInterface` schema).
//!
//! The report fields are the ones python-scciclient's `get_essential_properties` reads
//! for Ironic's inspection: `System/Memory/Installed` (MB), the sum of
//! `System/Processor/CPU/CoreNumber`, and every `PhysicalDrive/ConfigurableSize` (MB,
//! anywhere in the document: the RAID controller's drives sit under
//! `Software/ServerView/ServerViewRaid`) for `local_gb` (each drive's MB / 1024, rounded
//! down, then summed). Besides those: the BIOS version
//! (`System/BIOS/SMBIOS/Type0/BiosVersion`), the iRMC's generation and firmware, and the
//! server model as the report's `Summary/Created/OS` line names it.
//!
//! A real report carries no host NIC MACs (only the iRMC's own management port, which is
//! never a deploy NIC), so MACs come from Redfish where the generation has it.

use super::report::has_virtual_fd;
use super::xml::{Element, parse_document};
use super::{WireError, malformed};

/// The hardware facts of one report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportInventory {
    /// Sum of `CoreNumber` over the CPUs (Ironic's `cpus`).
    pub cpus: u32,
    /// `System/Memory/Installed`, MB.
    pub memory_mb: u64,
    /// Sum over the physical drives of `ConfigurableSize` MB / 1024.
    pub local_gb: u64,
    /// Physical drives found.
    pub drives: u32,
    /// `iRMC S4` / `iRMC S5` / `iRMC S6`.
    pub irmc_model: String,
    /// The iRMC firmware, e.g. `7.65F` (Ironic's `irmc_firmware_version`).
    pub irmc_firmware: String,
    /// The BIOS version string (Ironic's `rom_firmware_version`), if reported.
    pub bios_version: Option<String>,
    /// The server model from `Summary/Created/OS` (e.g. `RX300S8`), if reported.
    pub server_model: Option<String>,
    /// Whether this iRMC has a virtual floppy.
    pub has_virtual_fd: bool,
}

/// Parses the inventory of a `/report.xml`.
pub fn parse_inventory(doc: &str) -> Result<ReportInventory, WireError> {
    let root = parse_document(doc)?;
    if root.name != "Root" {
        return Err(malformed(format!(
            "expected <Root> in report.xml, found <{}>",
            root.name
        )));
    }
    let mc = root
        .path("System/ManagementControllers/iRMC")
        .ok_or(WireError::NoManagementController)?;
    let irmc_model = mc
        .attr("Name")
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let irmc_firmware = mc
        .child("Firmware")
        .map(|f| f.text_trimmed().to_owned())
        .unwrap_or_default();
    let memory_mb = match root
        .path("System/Memory/Installed")
        .map(Element::text_trimmed)
    {
        None | Some("") => 0,
        Some(v) => v
            .parse()
            .map_err(|_| malformed("System/Memory/Installed is not a number"))?,
    };
    let mut cpus: u32 = 0;
    if let Some(p) = root.path("System/Processor") {
        for cpu in p.children_named("CPU") {
            if let Some(v) = cpu
                .child("CoreNumber")
                .map(Element::text_trimmed)
                .filter(|v| !v.is_empty())
            {
                let n: u32 = v
                    .parse()
                    .map_err(|_| malformed("CPU/CoreNumber is not a number"))?;
                cpus = cpus.saturating_add(n);
            }
        }
    }
    let mut sizes = Vec::new();
    collect_drive_sizes(&root, &mut sizes, 0)?;
    let local_gb = sizes.iter().map(|mb| mb / 1024).sum();
    let bios_version = root
        .path("System/BIOS/SMBIOS/Type0/BiosVersion")
        .map(|e| e.text_trimmed().to_owned())
        .filter(|v| !v.is_empty());
    // "iRMC S4 7.65F SDR: 3.71   ID 0356  RX300S8": the fields are separated by runs of
    // two or more spaces, the server model is the last one.
    let server_model = root
        .path("Summary/Created/OS")
        .and_then(|e| {
            e.text_trimmed()
                .split("  ")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .last()
                .map(str::to_owned)
        })
        .filter(|m| !m.is_empty() && !m.starts_with("iRMC"));
    Ok(ReportInventory {
        cpus,
        memory_mb,
        local_gb,
        drives: sizes.len() as u32,
        has_virtual_fd: has_virtual_fd(&irmc_model, &irmc_firmware),
        irmc_model,
        irmc_firmware,
        bios_version,
        server_model,
    })
}

fn collect_drive_sizes(el: &Element, out: &mut Vec<u64>, depth: usize) -> Result<(), WireError> {
    if depth > super::MAX_DEPTH {
        return Ok(());
    }
    for c in &el.children {
        if c.name == "PhysicalDrive" {
            if let Some(v) = c.child("ConfigurableSize").map(Element::text_trimmed) {
                let mb: u64 = v
                    .parse()
                    .map_err(|_| malformed("PhysicalDrive/ConfigurableSize is not a number"))?;
                out.push(mb);
            }
        } else {
            collect_drive_sizes(c, out, depth + 1)?;
        }
    }
    Ok(())
}

/// The system's Ethernet interface collection (`EthernetInterfaces` link of the
/// ComputerSystem), relative to the BMC.
pub const REDFISH_ETHERNET: &str = "/redfish/v1/Systems/0/EthernetInterfaces";

/// The member links of an `EthernetInterfaceCollection`.
pub fn parse_ethernet_collection(body: &str) -> Result<Vec<String>, WireError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| malformed(format!("Redfish reply is not JSON: {e}")))?;
    let members = v
        .get("Members")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| malformed("EthernetInterfaceCollection has no Members"))?;
    let mut out = Vec::new();
    for m in members {
        let id = m
            .get("@odata.id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| malformed("an EthernetInterfaces member has no @odata.id"))?;
        if !id.starts_with("/redfish/v1/") || id.contains("..") {
            return Err(malformed(format!(
                "EthernetInterfaces member link {id:?} is not a /redfish/v1/ path"
            )));
        }
        out.push(id.to_owned());
    }
    Ok(out)
}

/// The MAC of one `EthernetInterface`: `PermanentMACAddress` when present (the burnt-in
/// address, which PXE and the ramdisk's lookup see), else `MACAddress`; lowercase
/// `aa:bb:cc:dd:ee:ff`. `None` for an interface without a usable MAC (an empty or all-zero
/// one, as a disabled port shows).
pub fn parse_ethernet_mac(body: &str) -> Result<Option<String>, WireError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| malformed(format!("Redfish reply is not JSON: {e}")))?;
    let pick = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .and_then(normalize_mac)
    };
    Ok(pick("PermanentMACAddress").or_else(|| pick("MACAddress")))
}

fn normalize_mac(s: &str) -> Option<String> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.trim().split(sep).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut octets = [0u8; 6];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    if octets == [0; 6] {
        return None;
    }
    Some(
        octets
            .iter()
            .map(|o| format!("{o:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}
