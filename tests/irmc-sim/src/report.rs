//! `/report.xml`: the iRMC model/firmware and the generated hardware report.
//!
//! With `--report FILE` every node serves that file verbatim. Otherwise a small report
//! is generated per node with the shape clients read: `Root@Version/@OS`,
//! `System/BIOS/SMBIOS/Type0/BiosVersion`, `System/Processor/CPU/CoreNumber`,
//! `System/Memory/Installed` (MB), `System/ManagementControllers/iRMC[@Name]/Firmware` and
//! the RAID controller's `PhysicalDrive/ConfigurableSize` under
//! `Software/ServerView/ServerViewRaid`. Like a real report it names no host NIC MAC (only
//! the iRMC's own); the NICs are in Redfish (`ethernet.rs`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

use crate::SimError;
use crate::scci::escape;

/// iRMC generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub enum Model {
    #[default]
    S4,
    S5,
    S6,
}

impl Model {
    /// "iRMC S4" etc., as in the report.
    pub fn name(self) -> &'static str {
        match self {
            Model::S4 => "iRMC S4",
            Model::S5 => "iRMC S5",
            Model::S6 => "iRMC S6",
        }
    }
    /// A typical firmware for the model.
    pub fn default_firmware(self) -> &'static str {
        match self {
            Model::S4 => "7.65F",
            Model::S5 => "1.25P",
            Model::S6 => "2.50P",
        }
    }
    /// Server model shown in the generated report and Redfish.
    pub fn server_model(self) -> &'static str {
        match self {
            Model::S4 => "PRIMERGY RX300 S8",
            Model::S5 => "PRIMERGY RX2540 M4",
            Model::S6 => "PRIMERGY RX2540 M6",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::S4 => "S4",
            Model::S5 => "S5",
            Model::S6 => "S6",
        })
    }
}

impl FromStr for Model {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s
            .trim()
            .trim_start_matches("iRMC")
            .trim()
            .to_ascii_uppercase()
            .as_str()
        {
            "S4" => Ok(Model::S4),
            "S5" => Ok(Model::S5),
            "S6" => Ok(Model::S6),
            _ => Err(SimError::Config(format!(
                "unknown iRMC model {s:?} (S4, S5 or S6)"
            ))),
        }
    }
}

/// Leading number of a firmware string ("7.65F" -> 7.65), compared as a decimal as
/// the reference client does (so "9.8" counts as 9.80).
fn version_head(fw: &str) -> Option<f64> {
    let end = fw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(fw.len());
    fw[..end].parse().ok()
}

/// Virtual floppy support: S4 up to 9.21F, S5 up to 1.25P, never on S6 (SCCI.md).
/// An unparsable firmware string is treated as current, i.e. without a floppy.
pub fn has_virtual_fd(model: Model, firmware: &str) -> bool {
    let Some(v) = version_head(firmware) else {
        return false;
    };
    match model {
        Model::S4 => v <= 9.21,
        Model::S5 => v <= 1.25,
        Model::S6 => false,
    }
}

/// Model and firmware named by a report document
/// (`System/ManagementControllers/iRMC[@Name]/Firmware`), if it names them.
pub fn identify(doc: &str) -> Option<(Model, String)> {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut r = Reader::from_str(doc.trim_start());
    let mut path: Vec<String> = Vec::new();
    let mut model = None;
    let mut firmware = None;
    loop {
        match r.read_event().ok()? {
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                if name == "iRMC"
                    && path.ends_with(&["System".to_string(), "ManagementControllers".to_string()])
                {
                    for a in e.attributes().flatten() {
                        if a.key.as_ref() == "Name" {
                            model = a
                                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()?
                                .parse::<Model>()
                                .ok();
                        }
                    }
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t)
                if path.last().is_some_and(|p| p == "Firmware")
                    && path.iter().rev().nth(1).is_some_and(|p| p == "iRMC") =>
            {
                firmware = Some(t.xml10_content().trim().to_string());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some((model?, firmware?))
}

/// The BIOS version of every generated report (`System/BIOS/SMBIOS/Type0/BiosVersion`).
pub const BIOS_VERSION: &str = "V4.6.5.4 R1.14.0 for D2939-B1x";
/// Size of each of the two physical drives of a generated report
/// (`PhysicalDrive/ConfigurableSize`, MB, as ServerView RAID reports it).
pub const DRIVE_MB: u64 = 190240;

/// Generate a report for one node: the shape of a real report (the elements clients read,
/// at the paths a real iRMC S4 puts them; see the fixture in `fixtures/`).
pub fn generate(model: Model, firmware: &str, address: Ipv4Addr, index: usize) -> String {
    let fw = escape(firmware);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<Root Schema=\"2\" Version=\"{fw}\" OS=\"{os}\">\n\
 <Summary>\n  <Created>\n   <Company>FUJITSU</Company>\n   <Computer>iRMC-SIM-{index:05}</Computer>\n   <OS>{os} {fw}  {server}</OS>\n  </Created>\n </Summary>\n\
 <System>\n\
  <BIOS Schema=\"1\">\n   <SMBIOS Version=\"Unknown\">\n    <Type0 Name=\"BIOS Information\" Type=\"0\">\n     <BiosVersion>{bios}</BiosVersion>\n    </Type0>\n   </SMBIOS>\n  </BIOS>\n\
  <Processor Schema=\"1\">\n\
   <CPU Boot=\"true\">\n    <SocketDesignation>CPU1</SocketDesignation>\n    <Manufacturer>Intel</Manufacturer>\n    <Speed>2600</Speed>\n    <CoreNumber>8</CoreNumber>\n    <LogicalCpuNumber>16</LogicalCpuNumber>\n   </CPU>\n\
   <CPU Boot=\"false\">\n    <SocketDesignation>CPU2</SocketDesignation>\n    <Manufacturer>Intel</Manufacturer>\n    <Speed>2600</Speed>\n    <CoreNumber>8</CoreNumber>\n    <LogicalCpuNumber>16</LogicalCpuNumber>\n   </CPU>\n\
  </Processor>\n\
  <Memory Schema=\"2\">\n   <Installed>8192</Installed>\n  </Memory>\n\
  <ManagementControllers Schema=\"1\">\n   <iRMC Name=\"{os}\">\n    <Firmware>{fw}</Firmware>\n    <IPAddress>{address}</IPAddress>\n   </iRMC>\n  </ManagementControllers>\n\
 </System>\n\
 <Software>\n  <ServerView>\n   <ServerViewRaid Schema=\"1\" Installed=\"true\">\n    <amEMSV Version=\"2\" ReadSocket=\"permanent\">\n     <System>\n\
      <Adapter Nr=\"0\" Type=\"SAS\" Name=\"RAID Ctrl SAS 6G (0)\">\n       <Ports Number=\"1\">\n        <Port Nr=\"0\" Type=\"SAS\" Name=\"Port 0 - 3\">\n         <Enclosure Name=\"Enclosure (1)\">\n\
          <PhysicalDrive DeviceNumber=\"8\" Name=\"SIM-SSD (1:0)\">\n           <ConfigurableSize>{drive_mb}</ConfigurableSize>\n          </PhysicalDrive>\n\
          <PhysicalDrive DeviceNumber=\"9\" Name=\"SIM-SSD (1:1)\">\n           <ConfigurableSize>{drive_mb}</ConfigurableSize>\n          </PhysicalDrive>\n\
         </Enclosure>\n        </Port>\n       </Ports>\n      </Adapter>\n\
     </System>\n    </amEMSV>\n   </ServerViewRaid>\n  </ServerView>\n </Software>\n\
</Root>\n",
        bios = BIOS_VERSION,
        drive_mb = DRIVE_MB,
        os = model.name(),
        server = model.server_model(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_fd_rules() {
        assert!(has_virtual_fd(Model::S4, "7.65F"));
        assert!(has_virtual_fd(Model::S4, "9.21F"));
        assert!(!has_virtual_fd(Model::S4, "9.62F"));
        assert!(!has_virtual_fd(Model::S4, "9.8F"));
        assert!(has_virtual_fd(Model::S5, "1.25P"));
        assert!(!has_virtual_fd(Model::S5, "1.60P"));
        assert!(!has_virtual_fd(Model::S6, "1.00P"));
        assert!(!has_virtual_fd(Model::S4, "garbage"));
    }

    #[test]
    fn identifies_the_fixture() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/report-s4-7.65F-rx300s8.xml"
        ))
        .unwrap();
        assert_eq!(identify(&doc), Some((Model::S4, "7.65F".to_string())));
        let generated = generate(Model::S6, "2.50P", Ipv4Addr::LOCALHOST, 0);
        assert_eq!(identify(&generated), Some((Model::S6, "2.50P".to_string())));
        assert_eq!(identify("<Root><System/></Root>"), None);
        assert_eq!(identify("garbage <<"), None);
    }

    #[test]
    fn models_parse() {
        assert_eq!("S5".parse::<Model>().unwrap(), Model::S5);
        assert_eq!("iRMC S6".parse::<Model>().unwrap(), Model::S6);
        assert!("S7".parse::<Model>().is_err());
    }
}
