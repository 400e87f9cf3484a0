//! Every iRMC wire format, one file each under `wire/`: SCCI `<CMDSEQ>`
//! requests and the `<Status>` reply (`scci.rs`), the virtual drives'
//! ConfigSpace items (`media.rs`), the `/iRMC_Settings.pre` dump
//! (`settings.rs`), `/report.xml` (`report.rs`; its hardware inventory and the
//! Redfish NIC MACs for inspection in `inventory.rs`) and the Redfish JSON subset
//! (`redfish.rs`), over a tiny XML layer (`xml.rs`). Pure functions, no IO.
//!
//! The golden tests (exact bytes, round trips, a real `/report.xml` capture
//! in `tests/fixtures/`) are in `share-agent/irmc/tests/it/wire.rs`.
//!
//! Parsing is fallible everywhere: a real iRMC may echo request text
//! unescaped into its reply, so a reply can be malformed XML. Parse faults are
//! returned as [`WireError`] (no BMC context here; the client wraps them into
//! [`crate::IrmcError`]). No error ever quotes the document, because the
//! document may contain a password.
//!
//! Building escapes every value placed in XML (`&`, `<`, `>`, `"`, `'`), so
//! share passwords such as `p<&"w` arrive intact.
//!
//! Everything is re-exported here, so callers name `irmc::wire::X` whatever
//! file `X` lives in.

mod inventory;
mod media;
mod redfish;
mod redfish_media;
mod report;
mod scci;
mod settings;
mod xml;

pub use inventory::{
    REDFISH_ETHERNET, ReportInventory, parse_ethernet_collection, parse_ethernet_mac,
    parse_inventory,
};
pub use media::{
    MediaKind, MediaLocation, MediaOes, OE_REMOTE_MEDIA_ENABLED, ShareType, media_settings_commands,
};
pub use redfish::{
    BootMode, BootPersistence, BootTarget, PowerState, REDFISH_RESET, REDFISH_SYSTEM, ResetType,
    SystemInfo, boot_override_body, parse_system, reset_body,
};
pub use redfish_media::{
    FTS_VM_PATH, VirtualDrive, fts_section, fts_vm_action, fts_vm_body, insert_media_body, link,
    managed_by, members, parse_fts_vm, parse_virtual_drive, redfish_error_message,
};
pub use report::{Report, build_report, has_virtual_fd, parse_report};
pub use scci::{
    Opcode, ParsedCmd, PowerAction, ScciCommand, ScciData, ScciStatus, build_cmdseq, build_status,
    parse_cmdseq, parse_config_value, parse_status,
};
pub use settings::{MediaView, Settings};
pub use xml::{Element, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, escape, parse_document};

/// A context-free parse fault. The client turns it into an
/// [`crate::IrmcError`] naming the BMC and operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not well-formed, truncated, or missing a required element.
    #[error("{0}")]
    Malformed(String),
    /// `/report.xml` names no iRMC: no `System/ManagementControllers/iRMC` section, and
    /// neither `Root@OS`/`Root@Version` nor `Summary/Created/OS` names one.
    #[error(
        "report.xml has no System/ManagementControllers/iRMC section, and neither Root@OS/Root@Version nor Summary/Created/OS names an iRMC generation and firmware"
    )]
    NoManagementController,
}

fn malformed(reason: impl Into<String>) -> WireError {
    WireError::Malformed(reason.into())
}
