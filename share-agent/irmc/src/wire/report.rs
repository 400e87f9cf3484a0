//! `/report.xml`: model, firmware, memory and CPU cores of the server.

use super::xml::{Element, escape, parse_document};
use super::{WireError, malformed};

/// What `/report.xml` tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `iRMC S4` / `iRMC S5` / `iRMC S6`.
    pub model: String,
    /// e.g. `7.65F`.
    pub firmware: String,
    /// `System/Memory/Installed`, MB (0 when absent).
    pub memory_mb: u64,
    /// Sum of `System/Processor/CPU/CoreNumber`.
    pub cpu_cores: u32,
    /// Whether this firmware has a virtual floppy (S4 <= 9.21, S5 <= 1.25, never S6).
    pub has_virtual_fd: bool,
}

/// Parses `/report.xml`.
pub fn parse_report(doc: &str) -> Result<Report, WireError> {
    let root = parse_document(doc)?;
    if root.name != "Root" {
        return Err(malformed(format!(
            "expected <Root> in report.xml, found <{}>",
            root.name
        )));
    }
    // The iRMC section, else the Root attributes, else Summary/Created/OS.
    let (model, firmware, _) =
        crate::capability::identify(&root).ok_or(WireError::NoManagementController)?;
    let memory_mb = match root
        .path("System/Memory/Installed")
        .map(Element::text_trimmed)
    {
        None | Some("") => 0,
        Some(v) => v
            .parse()
            .map_err(|_| malformed("System/Memory/Installed is not a number"))?,
    };
    let mut cpu_cores: u32 = 0;
    if let Some(proc_) = root.path("System/Processor") {
        for cpu in proc_.children_named("CPU") {
            match cpu.child("CoreNumber").map(Element::text_trimmed) {
                None | Some("") => {}
                Some(v) => {
                    let n: u32 = v
                        .parse()
                        .map_err(|_| malformed("CPU/CoreNumber is not a number"))?;
                    cpu_cores = cpu_cores.saturating_add(n);
                }
            }
        }
    }
    let has_virtual_fd = has_virtual_fd(&model, &firmware);
    Ok(Report {
        model,
        firmware,
        memory_mb,
        cpu_cores,
        has_virtual_fd,
    })
}

/// The virtual floppy exists on iRMC S4 up to firmware 9.21 and S5 up to
/// 1.25 (deprecated from S4 9.62F / S5 1.60P), never on S6: the capability table's
/// row ([`crate::capability::RULES`]).
pub fn has_virtual_fd(model: &str, firmware: &str) -> bool {
    crate::capability::has(crate::capability::Feature::VirtualFloppy, model, firmware)
}

/// Builds a minimal `/report.xml` (for simulators and tests).
pub fn build_report(report: &Report) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Root Schema=\"2\" Version=\"{fw}\" OS=\"{model}\">\n <System>\n  <Processor Schema=\"1\">\n   <CPU Boot=\"true\">\n    <CoreNumber>{cores}</CoreNumber>\n   </CPU>\n  </Processor>\n  <Memory Schema=\"2\">\n   <Installed>{mem}</Installed>\n  </Memory>\n  <ManagementControllers Schema=\"1\">\n   <iRMC Name=\"{model}\">\n    <Firmware>{fw}</Firmware>\n   </iRMC>\n  </ManagementControllers>\n </System>\n</Root>\n",
        fw = escape(&report.firmware),
        model = escape(&report.model),
        cores = report.cpu_cores,
        mem = report.memory_mb,
    )
}
