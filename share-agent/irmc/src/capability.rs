//! What an iRMC can do, from what its `/report.xml` says: the one capability table.
//!
//! The generation (`iRMC S2` .. `iRMC S6`) and the firmware version decide every
//! media-path and transport question; the thresholds are data ([`RULES`]), not code:
//!
//! | feature | S4 | S5 | S6 | source |
//! | --- | --- | --- | --- | --- |
//! | virtual floppy | up to 9.21 | up to 1.25 | never | python-scciclient (`S4_FD_SUPPORT_UPPER`, `S5_FD_SUPPORT_UPPER`), Fujitsu: deprecated from S4 9.62F / S5 1.60P |
//! | Redfish usable | from 9.04 | from 1.25 | always | Fujitsu's Redfish tools' stated minimum |
//! | IPMI over LAN on by default | always | always | below 2.00 | Ironic's `IPMI_ENABLED_BY_DEFAULT_RANGES` |
//!
//! S2 and S3 are refused: the product needs "iRMC S4 and beyond with a valid licence".
//! Versions are compared as the reference client compares them: the numeric head of the
//! firmware string as a decimal number (`9.21F` -> 9.21, so `9.8` is 9.80).
//!
//! Where the report names its iRMC: `System/ManagementControllers/iRMC[@Name]/Firmware`;
//! some firmware omits that section but still names generation and firmware in the
//! `Root` element (`OS="iRMC S4" Version="7.65F"`) or in `Summary/Created/OS`
//! (`iRMC S4 7.65F SDR: 3.71 ...`). [`identify`] tries the three in that order.

use crate::wire::Element;

/// Where [`identify`] found the generation and firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifiedBy {
    /// `System/ManagementControllers/iRMC`.
    ManagementController,
    /// `Root@OS` and `Root@Version`.
    RootAttributes,
    /// `Summary/Created/OS`.
    SummaryOs,
}

/// A feature whose availability depends on generation and firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// The SCCI virtual floppy (`ConnectRemoteFdImage`, ConfigSpace 1A5x).
    VirtualFloppy,
    /// A usable Redfish service (boot override, power, Fujitsu's virtual-media OEM).
    Redfish,
    /// IPMI over LAN enabled in the factory settings.
    IpmiByDefault,
}

/// One row of the capability table: `feature` exists on `generation` for firmware
/// versions `min <= v` (when given) and `v <= max_incl` / `v < below` (when given).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Which feature.
    pub feature: Feature,
    /// iRMC generation number (4 for S4).
    pub generation: u8,
    /// Lowest firmware with the feature.
    pub min: Option<f64>,
    /// Highest firmware with the feature (inclusive).
    pub max_incl: Option<f64>,
    /// First firmware without the feature.
    pub below: Option<f64>,
}

const fn rule(feature: Feature, generation: u8) -> Rule {
    Rule {
        feature,
        generation,
        min: None,
        max_incl: None,
        below: None,
    }
}

/// The capability table. A generation without a row for a feature lacks it.
pub const RULES: &[Rule] = &[
    Rule {
        max_incl: Some(9.21),
        ..rule(Feature::VirtualFloppy, 4)
    },
    Rule {
        max_incl: Some(1.25),
        ..rule(Feature::VirtualFloppy, 5)
    },
    Rule {
        min: Some(9.04),
        ..rule(Feature::Redfish, 4)
    },
    Rule {
        min: Some(1.25),
        ..rule(Feature::Redfish, 5)
    },
    rule(Feature::Redfish, 6),
    rule(Feature::IpmiByDefault, 4),
    rule(Feature::IpmiByDefault, 5),
    Rule {
        below: Some(2.00),
        ..rule(Feature::IpmiByDefault, 6)
    },
];

/// The oldest generation the product supports.
pub const MIN_GENERATION: u8 = 4;

/// The generation number in a model name: `iRMC S4` / `iRMCS4` / `S4` -> 4.
pub fn generation(model: &str) -> Option<u8> {
    let m = model.trim();
    let m = m.strip_prefix("iRMC").unwrap_or(m).trim_start();
    let digits = m.strip_prefix(['S', 's'])?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    digits[..end].parse().ok()
}

/// The numeric head of a firmware string as a decimal number (`7.65F` -> 7.65).
pub fn version(firmware: &str) -> Option<f64> {
    let fw = firmware.trim();
    let end = fw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(fw.len());
    let head = fw[..end].trim_end_matches('.');
    // "9.21.3" is not a decimal: keep major.minor, as the reference's float() would
    // fail on it and treat it as unknown; we compare the first two parts instead.
    let mut parts = head.split('.');
    let major = parts.next().filter(|p| !p.is_empty())?;
    match parts.next() {
        Some(minor) if !minor.is_empty() => format!("{major}.{minor}").parse().ok(),
        _ => major.parse().ok(),
    }
}

/// Whether `feature` exists on `model` with `firmware`, per [`RULES`]. An unparsable
/// firmware has no version-bound feature (a version-free row still applies).
pub fn has(feature: Feature, model: &str, firmware: &str) -> bool {
    let Some(generation) = generation(model) else {
        return false;
    };
    let v = version(firmware);
    RULES
        .iter()
        .filter(|r| r.feature == feature && r.generation == generation)
        .any(|r| {
            let bounded = r.min.is_some() || r.max_incl.is_some() || r.below.is_some();
            match v {
                None => !bounded,
                Some(v) => {
                    r.min.is_none_or(|m| v >= m)
                        && r.max_incl.is_none_or(|m| v <= m)
                        && r.below.is_none_or(|b| v < b)
                }
            }
        })
}

/// How the parameter image reaches the node on this BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaPath {
    /// SCCI virtual floppy (S4 <= 9.21, S5 <= 1.25).
    ScciFloppy,
    /// SCCI virtual hard disk (no floppy, no usable Redfish).
    ScciHardDisk,
    /// Fujitsu's Redfish virtual media, HD image (no floppy, Redfish usable); the CD
    /// goes the same way.
    RedfishHardDisk,
}

impl MediaPath {
    /// Short name for logs, metrics and the demo's summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScciFloppy => "scci-floppy",
            Self::ScciHardDisk => "scci-hd",
            Self::RedfishHardDisk => "redfish-hd",
        }
    }
}

/// What one iRMC can do.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    /// Model as reported, e.g. `iRMC S5`.
    pub model: String,
    /// Firmware as reported, e.g. `1.60P`.
    pub firmware: String,
    /// Generation number, when the model names one.
    pub generation: Option<u8>,
    /// SCCI virtual floppy present.
    pub virtual_fd: bool,
    /// A usable Redfish service.
    pub redfish: bool,
    /// IPMI over LAN on in the factory settings.
    pub ipmi_by_default: bool,
}

impl Capabilities {
    /// The table applied to one model and firmware.
    pub fn of(model: &str, firmware: &str) -> Self {
        Self {
            model: model.trim().to_owned(),
            firmware: firmware.trim().to_owned(),
            generation: generation(model),
            virtual_fd: has(Feature::VirtualFloppy, model, firmware),
            redfish: has(Feature::Redfish, model, firmware),
            ipmi_by_default: has(Feature::IpmiByDefault, model, firmware),
        }
    }

    /// The parameter image's path on this BMC.
    pub fn media_path(&self) -> MediaPath {
        if self.virtual_fd {
            MediaPath::ScciFloppy
        } else if self.redfish {
            MediaPath::RedfishHardDisk
        } else {
            MediaPath::ScciHardDisk
        }
    }

    /// Refuses generations before S4 and models the table does not know, with one
    /// sentence an operator can act on.
    pub fn check_supported(&self) -> Result<(), String> {
        match self.generation {
            Some(g) if g >= MIN_GENERATION => Ok(()),
            Some(g) => Err(format!(
                "{} (firmware {}) is not supported: virtual-media deploys need iRMC S4 or later, this is S{g}",
                self.model, self.firmware
            )),
            None => Err(format!(
                "report.xml names the management controller {:?} (firmware {}), which is not an iRMC generation this driver knows (S4, S5, S6)",
                self.model, self.firmware
            )),
        }
    }

    /// One line for operators: generation, firmware and the paths taken.
    pub fn summary(&self) -> String {
        format!(
            "{} {}: parameter image by {}, Redfish {}, IPMI over LAN {} by default",
            self.model,
            self.firmware,
            self.media_path().as_str(),
            if self.redfish { "usable" } else { "not usable" },
            if self.ipmi_by_default { "on" } else { "off" },
        )
    }
}

/// Generation name and firmware from a parsed report: the iRMC section, else the
/// `Root` attributes, else `Summary/Created/OS`.
pub fn identify(root: &Element) -> Option<(String, String, IdentifiedBy)> {
    if let Some(mc) = root.path("System/ManagementControllers/iRMC") {
        let model = mc.attr("Name").map(str::trim).filter(|m| !m.is_empty());
        let fw = mc
            .child("Firmware")
            .map(|f| f.text_trimmed())
            .filter(|f| !f.is_empty());
        if let (Some(m), Some(f)) = (model, fw) {
            return Some((
                m.to_owned(),
                f.to_owned(),
                IdentifiedBy::ManagementController,
            ));
        }
    }
    let os = root.attr("OS").map(str::trim).filter(|o| !o.is_empty());
    let ver = root
        .attr("Version")
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let (Some(os), Some(ver)) = (os, ver)
        && generation(os).is_some()
    {
        return Some((os.to_owned(), ver.to_owned(), IdentifiedBy::RootAttributes));
    }
    // "iRMC S4 7.65F SDR: 3.71   ID 0356  RX300S8"
    let created = root.path("Summary/Created/OS")?.text_trimmed();
    let mut words = created.split_whitespace();
    let first = words.next()?;
    let (model, fw) = if first == "iRMC" {
        let g = words.next()?;
        (format!("iRMC {g}"), words.next()?)
    } else {
        (first.to_owned(), words.next()?)
    };
    generation(&model)?;
    version(fw)?;
    Some((model, fw.to_owned(), IdentifiedBy::SummaryOs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (model, fw, fd, redfish, ipmi) in [
            ("iRMC S4", "7.65F", true, false, true),
            ("iRMC S4", "9.04F", true, true, true),
            ("iRMC S4", "9.21F", true, true, true),
            ("iRMC S4", "9.62F", false, true, true),
            ("iRMC S4", "9.8F", false, true, true),
            ("iRMC S5", "1.20P", true, false, true),
            ("iRMC S5", "1.25P", true, true, true),
            ("iRMC S5", "1.60P", false, true, true),
            ("iRMC S6", "1.37P", false, true, true),
            ("iRMC S6", "2.00P", false, true, false),
            ("iRMC S3", "3.77A", false, false, false),
            ("iRMC S4", "garbage", false, false, true),
        ] {
            let c = Capabilities::of(model, fw);
            assert_eq!(
                (c.virtual_fd, c.redfish, c.ipmi_by_default),
                (fd, redfish, ipmi),
                "{model} {fw}"
            );
        }
    }

    #[test]
    fn generations() {
        assert_eq!(generation("iRMC S4"), Some(4));
        assert_eq!(generation("iRMCS6"), Some(6));
        assert_eq!(generation("S3"), Some(3));
        assert_eq!(generation("BMC"), None);
        assert_eq!(generation("iRMC"), None);
        assert!(
            Capabilities::of("iRMC S3", "3.77A")
                .check_supported()
                .is_err()
        );
        assert!(
            Capabilities::of("iRMC S4", "7.65F")
                .check_supported()
                .is_ok()
        );
        let e = Capabilities::of("iRMC S2", "1.00")
            .check_supported()
            .unwrap_err();
        assert!(e.contains("iRMC S4 or later"), "{e}");
    }
}
