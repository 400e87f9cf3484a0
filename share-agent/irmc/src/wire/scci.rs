//! SCCI over `/config`: the `<CMDSEQ>` request (opcodes, commands, the power
//! actions) and the `<Status>` reply.

use crate::config::Secret;

use super::xml::{escape, parse_document};
use super::{WireError, malformed};

/// SCCI operation codes (SCCI.md's table). Sent by name, as the reference
/// client does; [`Opcode::parse`] also accepts the hex code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// E001: read ConfigSpace item OE.
    ConfigSpaceGet,
    /// E002: write ConfigSpace item OE.
    ConfigSpaceSet,
    /// 0111
    PowerOnCabinet,
    /// 0112
    PowerOffCabinet,
    /// 0113
    PowerOffOnCabinet,
    /// 0203: reset the iRMC itself.
    ResetFirmware,
    /// 0204
    ResetServer,
    /// 0205: graceful off (needs the ServerView agent in the OS).
    RequestShutdownAndOff,
    /// 0206: graceful reboot (needs the ServerView agent in the OS).
    RequestShutdownAndReset,
    /// 0209
    ShutdownRequestCancelled,
    /// 020C
    RaiseNmi,
    /// 0251
    ConnectRemoteFdImage,
    /// 0252
    ConnectRemoteCdImage,
    /// 0253
    ConnectRemoteHdImage,
}

impl Opcode {
    /// Every opcode.
    pub const ALL: [Opcode; 14] = [
        Self::ConfigSpaceGet,
        Self::ConfigSpaceSet,
        Self::PowerOnCabinet,
        Self::PowerOffCabinet,
        Self::PowerOffOnCabinet,
        Self::ResetFirmware,
        Self::ResetServer,
        Self::RequestShutdownAndOff,
        Self::RequestShutdownAndReset,
        Self::ShutdownRequestCancelled,
        Self::RaiseNmi,
        Self::ConnectRemoteFdImage,
        Self::ConnectRemoteCdImage,
        Self::ConnectRemoteHdImage,
    ];

    /// The `OC` name sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConfigSpaceGet | Self::ConfigSpaceSet => "ConfigSpace",
            Self::PowerOnCabinet => "PowerOnCabinet",
            Self::PowerOffCabinet => "PowerOffCabinet",
            Self::PowerOffOnCabinet => "PowerOffOnCabinet",
            Self::ResetFirmware => "ResetFirmware",
            Self::ResetServer => "ResetServer",
            Self::RequestShutdownAndOff => "RequestShutdownAndOff",
            Self::RequestShutdownAndReset => "RequestShutdownAndReset",
            Self::ShutdownRequestCancelled => "ShutdownRequestCancelled",
            Self::RaiseNmi => "RaiseNMI",
            Self::ConnectRemoteFdImage => "ConnectRemoteFdImage",
            Self::ConnectRemoteCdImage => "ConnectRemoteCdImage",
            Self::ConnectRemoteHdImage => "ConnectRemoteHdImage",
        }
    }

    /// The numeric opcode.
    pub fn code(self) -> u16 {
        match self {
            Self::ConfigSpaceGet => 0xE001,
            Self::ConfigSpaceSet => 0xE002,
            Self::PowerOnCabinet => 0x0111,
            Self::PowerOffCabinet => 0x0112,
            Self::PowerOffOnCabinet => 0x0113,
            Self::ResetFirmware => 0x0203,
            Self::ResetServer => 0x0204,
            Self::RequestShutdownAndOff => 0x0205,
            Self::RequestShutdownAndReset => 0x0206,
            Self::ShutdownRequestCancelled => 0x0209,
            Self::RaiseNmi => 0x020C,
            Self::ConnectRemoteFdImage => 0x0251,
            Self::ConnectRemoteCdImage => 0x0252,
            Self::ConnectRemoteHdImage => 0x0253,
        }
    }

    /// The `Type` attribute: `GET` only for a ConfigSpace read.
    pub fn cmd_type(self) -> &'static str {
        if self == Self::ConfigSpaceGet {
            "GET"
        } else {
            "SET"
        }
    }

    /// Parses an `OC` attribute given by name (case-insensitive) or by hex
    /// code (`0111`, `0x0111`); `cmd_type` disambiguates ConfigSpace.
    pub fn parse(oc: &str, cmd_type: &str) -> Option<Self> {
        let oc = oc.trim();
        let get = cmd_type.trim().eq_ignore_ascii_case("GET");
        if oc.eq_ignore_ascii_case("ConfigSpace") {
            return Some(if get {
                Self::ConfigSpaceGet
            } else {
                Self::ConfigSpaceSet
            });
        }
        if let Some(op) = Self::ALL
            .iter()
            .find(|op| op.name().eq_ignore_ascii_case(oc))
        {
            return Some(*op);
        }
        let hex = oc
            .strip_prefix("0x")
            .or_else(|| oc.strip_prefix("0X"))
            .unwrap_or(oc);
        let code = u16::from_str_radix(hex, 16).ok()?;
        Self::ALL.iter().copied().find(|op| op.code() == code)
    }

    /// A `ConnectRemote*Image` command (connect or disconnect of a virtual drive).
    pub fn is_connect(self) -> bool {
        matches!(
            self,
            Self::ConnectRemoteFdImage | Self::ConnectRemoteCdImage | Self::ConnectRemoteHdImage
        )
    }

    /// Whether sending this command twice has the same effect as once.
    /// Decides whether a timed-out or 5xx request may be resent (see the
    /// crate docs for the full retry rule).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Self::ConfigSpaceGet
                | Self::ConfigSpaceSet
                | Self::PowerOnCabinet
                | Self::PowerOffCabinet
                | Self::ConnectRemoteFdImage
                | Self::ConnectRemoteCdImage
                | Self::ConnectRemoteHdImage
        )
    }
}

/// The `<DATA>` of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScciData {
    /// No `<DATA>` element.
    None,
    /// `<DATA Type="xsd::integer">`.
    Int(i64),
    /// `<DATA Type="xsd::string">`.
    Str(String),
    /// `<DATA Type="xsd::string" Encrypted="0">` (clear-text password).
    Secret(Secret),
}

/// One `<CMD>` of a `<CMDSEQ>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScciCommand {
    /// Opcode.
    pub opcode: Opcode,
    /// ConfigSpace item (ignored, written as `0`, for other opcodes).
    pub oe: u16,
    /// Object index (`OI`), 0 for everything this crate sends.
    pub oi: u16,
    /// Payload.
    pub data: ScciData,
}

impl ScciCommand {
    /// A command without data (power actions).
    pub fn new(opcode: Opcode) -> Self {
        Self {
            opcode,
            oe: 0,
            oi: 0,
            data: ScciData::None,
        }
    }

    /// ConfigSpace write of an integer.
    pub fn set_int(oe: u16, value: i64) -> Self {
        Self {
            opcode: Opcode::ConfigSpaceSet,
            oe,
            oi: 0,
            data: ScciData::Int(value),
        }
    }

    /// ConfigSpace write of a string.
    pub fn set_str(oe: u16, value: impl Into<String>) -> Self {
        Self {
            opcode: Opcode::ConfigSpaceSet,
            oe,
            oi: 0,
            data: ScciData::Str(value.into()),
        }
    }

    /// ConfigSpace write of a password.
    pub fn set_secret(oe: u16, value: Secret) -> Self {
        Self {
            opcode: Opcode::ConfigSpaceSet,
            oe,
            oi: 0,
            data: ScciData::Secret(value),
        }
    }

    /// ConfigSpace read.
    pub fn get(oe: u16) -> Self {
        Self {
            opcode: Opcode::ConfigSpaceGet,
            oe,
            oi: 0,
            data: ScciData::None,
        }
    }

    fn is_config_space(&self) -> bool {
        matches!(self.opcode, Opcode::ConfigSpaceGet | Opcode::ConfigSpaceSet)
    }
}

/// Builds the `<CMDSEQ>` document POSTed to `/config`. The result may hold a
/// clear-text password: never log it.
pub fn build_cmdseq(cmds: &[ScciCommand]) -> String {
    let mut out = String::with_capacity(96 + cmds.len() * 110);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<CMDSEQ>\n");
    for cmd in cmds {
        let oe = if cmd.is_config_space() {
            format!("{:04X}", cmd.oe)
        } else {
            "0".to_owned()
        };
        out.push_str(&format!(
            "  <CMD Context=\"SCCI\" OC=\"{}\" OE=\"{}\" OI=\"{}\" Type=\"{}\">\n",
            cmd.opcode.name(),
            oe,
            cmd.oi,
            cmd.opcode.cmd_type()
        ));
        match &cmd.data {
            ScciData::None => {}
            ScciData::Int(v) => {
                out.push_str(&format!("    <DATA Type=\"xsd::integer\">{v}</DATA>\n"));
            }
            ScciData::Str(s) => {
                out.push_str(&format!(
                    "    <DATA Type=\"xsd::string\">{}</DATA>\n",
                    escape(s)
                ));
            }
            ScciData::Secret(s) => {
                out.push_str(&format!(
                    "    <DATA Type=\"xsd::string\" Encrypted=\"0\">{}</DATA>\n",
                    escape(s.expose())
                ));
            }
        }
        out.push_str("  </CMD>\n");
    }
    out.push_str("</CMDSEQ>\n");
    out
}

/// One `<CMD>` as parsed from a `<CMDSEQ>` (a request, or the settings dump).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCmd {
    /// `OC` as written (name or hex).
    pub oc: String,
    /// The opcode, when `OC` is known.
    pub opcode: Option<Opcode>,
    /// `OE` parsed as hex (0 when absent or not hex).
    pub oe: u16,
    /// `OI` (0 when absent or not a number).
    pub oi: u16,
    /// `Type` (`SET` when absent).
    pub cmd_type: String,
    /// `<DATA>` text, unescaped; `None` when there is no `<DATA>` element.
    pub data: Option<String>,
    /// `<DATA Type=...>`.
    pub data_type: Option<String>,
    /// `<STATUS>` text, when present (settings dump).
    pub status: Option<String>,
}

/// Parses a `<CMDSEQ>` document (comments and leading whitespace allowed).
pub fn parse_cmdseq(doc: &str) -> Result<Vec<ParsedCmd>, WireError> {
    let root = parse_document(doc)?;
    if root.name != "CMDSEQ" {
        return Err(malformed(format!(
            "expected <CMDSEQ> root, found <{}>",
            root.name
        )));
    }
    let mut out = Vec::new();
    for cmd in root.children_named("CMD") {
        let oc = cmd.attr("OC").unwrap_or_default().to_owned();
        let cmd_type = cmd.attr("Type").unwrap_or("SET").to_owned();
        let oe = cmd
            .attr("OE")
            .and_then(|v| u16::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let oi = cmd
            .attr("OI")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let data = cmd.child("DATA");
        out.push(ParsedCmd {
            opcode: Opcode::parse(&oc, &cmd_type),
            oc,
            oe,
            oi,
            cmd_type,
            data: data.map(|d| d.text.clone()),
            data_type: data.and_then(|d| d.attr("Type")).map(str::to_owned),
            status: cmd.child("STATUS").map(|s| s.text_trimmed().to_owned()),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// SCCI status reply
// ---------------------------------------------------------------------------

/// The `<Status>` reply to a `/config` POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScciStatus {
    /// `<Value>`: 0 = success.
    pub value: i64,
    /// `<Severity>`.
    pub severity: String,
    /// `<Message>`.
    pub message: String,
    /// `<Error>` text.
    pub error: String,
}

/// Parses a `<Status>` reply. A missing or non-numeric `<Value>` is malformed.
pub fn parse_status(doc: &str) -> Result<ScciStatus, WireError> {
    let root = parse_document(doc)?;
    if root.name != "Status" {
        return Err(malformed(format!(
            "expected <Status> root, found <{}>",
            root.name
        )));
    }
    let value = root
        .child("Value")
        .ok_or_else(|| malformed("<Status> has no <Value>"))?
        .text_trimmed();
    let value: i64 = value
        .parse()
        .map_err(|_| malformed("<Value> is not an integer"))?;
    // Whitespace (including newlines) is collapsed so errors stay one line.
    let text = |name: &str| {
        root.child(name)
            .map(|e| e.text.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    Ok(ScciStatus {
        value,
        severity: text("Severity"),
        message: text("Message"),
        error: text("Error"),
    })
}

/// The value a ConfigSpace read returned for item `oe`: the `DATA` of the reply's `CMD`
/// child whose `OE` names the item (where Fujitsu's own tools read it), else a `DATA`
/// directly under the root. `None` when the reply carries no value.
pub fn parse_config_value(doc: &str, oe: u16) -> Result<Option<String>, WireError> {
    let root = parse_document(doc)?;
    let want = format!("{oe:04X}");
    let by_cmd = root
        .children_named("CMD")
        .find(|c| {
            c.attr("OE").is_some_and(|v| {
                v.trim()
                    .trim_start_matches("0x")
                    .eq_ignore_ascii_case(&want)
            })
        })
        .and_then(|c| c.child("DATA"));
    Ok(by_cmd
        .or_else(|| root.child("DATA"))
        .map(|d| d.text_trimmed().to_owned()))
}

/// Builds a `<Status>` reply (for simulators and tests).
pub fn build_status(status: &ScciStatus) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>{}</Value><Severity>{}</Severity><Message>{}</Message>",
        status.value,
        escape(&status.severity),
        escape(&status.message)
    );
    if !status.error.is_empty() {
        out.push_str(&format!(
            "<Error Context=\"SCCI\" OC=\"\" OE=\"0\" OI=\"0\">{}</Error>",
            escape(&status.error)
        ));
    }
    out.push_str("</Status>\n");
    out
}

// ---------------------------------------------------------------------------
// Power actions
// ---------------------------------------------------------------------------

/// SCCI power actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerAction {
    /// PowerOnCabinet.
    On,
    /// PowerOffCabinet (hard).
    Off,
    /// PowerOffOnCabinet.
    Cycle,
    /// ResetServer (hard).
    Reset,
    /// RequestShutdownAndOff (needs the ServerView agent).
    SoftOff,
    /// RequestShutdownAndReset (needs the ServerView agent).
    SoftReboot,
    /// RaiseNMI.
    Nmi,
}

impl PowerAction {
    /// The SCCI opcode.
    pub fn opcode(self) -> Opcode {
        match self {
            Self::On => Opcode::PowerOnCabinet,
            Self::Off => Opcode::PowerOffCabinet,
            Self::Cycle => Opcode::PowerOffOnCabinet,
            Self::Reset => Opcode::ResetServer,
            Self::SoftOff => Opcode::RequestShutdownAndOff,
            Self::SoftReboot => Opcode::RequestShutdownAndReset,
            Self::Nmi => Opcode::RaiseNmi,
        }
    }
}
