//! Every iRMC wire format in one place: SCCI `<CMDSEQ>` requests, the SCCI
//! `<Status>` reply, the `/iRMC_Settings.pre` dump, `/report.xml`, and the
//! Redfish JSON subset. Pure functions, no IO; golden tests at the bottom.
//!
//! Parsing is fallible everywhere: a real iRMC may echo request text
//! unescaped into its reply, so a reply can be malformed XML. Parse faults are
//! returned as [`WireError`] (no BMC context here; the client wraps them into
//! [`crate::IrmcError`]). No error ever quotes the document, because the
//! document may contain a password.
//!
//! Building escapes every value placed in XML (`&`, `<`, `>`, `"`, `'`), so
//! share passwords such as `p<&"w` arrive intact.

use std::collections::BTreeMap;
use std::fmt;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::config::Secret;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A context-free parse fault. The client turns it into an
/// [`crate::IrmcError`] naming the BMC and operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Not well-formed, truncated, or missing a required element.
    Malformed(String),
    /// `/report.xml` without `System/ManagementControllers/iRMC`.
    NoManagementController,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(r) => f.write_str(r),
            Self::NoManagementController => {
                f.write_str("report.xml has no System/ManagementControllers/iRMC section")
            }
        }
    }
}

fn malformed(reason: impl Into<String>) -> WireError {
    WireError::Malformed(reason.into())
}

// ---------------------------------------------------------------------------
// Escaping and a tiny fallible DOM
// ---------------------------------------------------------------------------

/// Escapes a value for XML text or attribute content.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Deepest element nesting accepted (real iRMC documents stay under 15).
pub const MAX_DEPTH: usize = 64;

/// A parsed XML element: enough structure for the small iRMC documents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Tag name (with prefix, if any).
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated, unescaped text content (not trimmed).
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a `/`-separated path of child names.
    pub fn path(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |el, name| el.child(name))
    }

    /// Trimmed text.
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn element_from(start: &BytesStart<'_>) -> Result<Element, WireError> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| malformed(format!("bad attribute in <{name}>: {e}")))?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| malformed(format!("bad attribute value in <{name}>: {e}")))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a whole XML document into its root element. Fails on anything not
/// well-formed: bad syntax, mismatched or unclosed tags (truncation), unknown
/// entities, text or a second element outside the root, an empty document.
/// Leading whitespace (and a byte-order mark) before the XML declaration is
/// tolerated. Nesting deeper than [`MAX_DEPTH`] is refused: the tree is
/// dropped recursively, so a hostile reply must not be able to build an
/// arbitrarily deep one.
pub fn parse_document(doc: &str) -> Result<Element, WireError> {
    let mut reader = Reader::from_str(doc.trim_start_matches('\u{feff}').trim_start());
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    fn attach(
        stack: &mut [Element],
        root: &mut Option<Element>,
        el: Element,
    ) -> Result<(), WireError> {
        if let Some(parent) = stack.last_mut() {
            parent.children.push(el);
            Ok(())
        } else if root.is_some() {
            Err(malformed("more than one root element"))
        } else {
            *root = Some(el);
            Ok(())
        }
    }

    loop {
        let event = reader.read_event().map_err(|e| {
            malformed(format!(
                "not well-formed XML near byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(e) => {
                if root.is_some() && stack.is_empty() {
                    return Err(malformed("more than one root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!(
                        "elements nested deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(element_from(&e)?);
            }
            Event::Empty(e) => {
                let el = element_from(&e)?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| malformed("closing tag without an opening tag"))?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&c.xml10_content()),
                None => return Err(malformed("CDATA outside the root element")),
            },
            Event::GeneralRef(r) => {
                let resolved: String = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => return Err(malformed("invalid character reference")),
                    }
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => v.to_owned(),
                        None => return Err(malformed(format!("unknown entity &{name};"))),
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err(malformed("entity outside the root element")),
                }
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(malformed(format!(
                        "truncated document: <{}> is not closed",
                        open.name
                    )));
                }
                return root.ok_or_else(|| malformed("empty document"));
            }
            // Declaration, processing instructions, comments, DOCTYPE.
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// SCCI opcodes and commands
// ---------------------------------------------------------------------------

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

    /// `ConnectRemote{Cd,Fd,Hd}Image` with DATA 1 (connect) or 0 (disconnect).
    pub fn connect(kind: MediaKind, connect: bool) -> Self {
        Self {
            opcode: kind.connect_opcode(),
            oe: 0,
            oi: 0,
            data: ScciData::Int(i64::from(connect)),
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
// Virtual media
// ---------------------------------------------------------------------------

/// Which virtual drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Virtual CD/DVD (ISO).
    Cd,
    /// Virtual floppy (only on S4 <= 9.21F and S5 <= 1.25P).
    Fd,
    /// Virtual hard disk image.
    Hd,
}

/// ConfigSpace OE values of one virtual drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaOes {
    /// Image server (address as the iRMC sees it).
    pub server: u16,
    /// User name.
    pub user_name: u16,
    /// Password (`Encrypted="0"`).
    pub password: u16,
    /// User domain.
    pub domain: u16,
    /// Share type (0 NFS, 1 CIFS).
    pub share_type: u16,
    /// Share name (CIFS share or NFS export path).
    pub share_name: u16,
    /// Image name (path relative to the share).
    pub image_name: u16,
    /// Attach mode (never written by this crate).
    pub attach_mode: u16,
    /// Number of emulated drives.
    pub count: u16,
}

/// `ConfBmcMediaOptionsRemoteMediaEnabled`, shared by all drive kinds.
pub const OE_REMOTE_MEDIA_ENABLED: u16 = 0x1A80;

impl MediaKind {
    /// The ConfigSpace items of this drive. CD (1A6x) and FD (1A5x) are
    /// documented by the reference client; HD (1A4x) is by analogy, see the
    /// crate docs.
    pub fn oes(self) -> MediaOes {
        let base = match self {
            Self::Cd => 0x1A60,
            Self::Fd => 0x1A50,
            Self::Hd => 0x1A40,
        };
        MediaOes {
            server: base,
            user_name: base + 1,
            password: base + 2,
            domain: base + 3,
            share_type: base + 4,
            share_name: base + 5,
            image_name: base + 6,
            attach_mode: base + 7,
            count: base + 8,
        }
    }

    /// `ConnectRemote{Cd,Fd,Hd}Image`.
    pub fn connect_opcode(self) -> Opcode {
        match self {
            Self::Cd => Opcode::ConnectRemoteCdImage,
            Self::Fd => Opcode::ConnectRemoteFdImage,
            Self::Hd => Opcode::ConnectRemoteHdImage,
        }
    }

    /// Ironic's operation name for an insert.
    pub fn insert_operation(self) -> &'static str {
        match self {
            Self::Cd => "Inserting virtual cdrom",
            Self::Fd => "Inserting virtual floppy",
            Self::Hd => "Inserting virtual hard disk",
        }
    }

    /// Ironic's operation name for an eject.
    pub fn eject_operation(self) -> &'static str {
        match self {
            Self::Cd => "Ejecting virtual cdrom",
            Self::Fd => "Ejecting virtual floppy",
            Self::Hd => "Ejecting virtual hard disk",
        }
    }
}

/// Share protocol, as the iRMC encodes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShareType {
    /// 0
    Nfs,
    /// 1 (the default in Ironic's configuration).
    #[default]
    Cifs,
}

impl ShareType {
    /// The wire value.
    pub fn code(self) -> i64 {
        match self {
            Self::Nfs => 0,
            Self::Cifs => 1,
        }
    }

    /// From the wire value.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Nfs),
            1 => Some(Self::Cifs),
            _ => None,
        }
    }
}

impl std::str::FromStr for ShareType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nfs" => Ok(Self::Nfs),
            "cifs" => Ok(Self::Cifs),
            other => Err(format!("must be nfs or cifs, got {other:?}")),
        }
    }
}

/// Where the iRMC finds an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaLocation {
    /// Image server address as the iRMC sees it.
    pub server: String,
    /// NFS or CIFS.
    pub share_type: ShareType,
    /// CIFS share name or NFS export path.
    pub share_name: String,
    /// Image path relative to the share.
    pub image_name: String,
    /// Share user (CIFS).
    pub user_name: String,
    /// Share password (CIFS).
    pub password: Secret,
    /// Share user domain (CIFS), usually empty.
    pub domain: String,
}

/// The ConfigSpace writes that point drive `kind` at `loc`, in the reference
/// client's order: enabled, count, server, domain, share type, share name,
/// image name, user name, password.
pub fn media_settings_commands(kind: MediaKind, loc: &MediaLocation) -> Vec<ScciCommand> {
    let oe = kind.oes();
    vec![
        ScciCommand::set_int(OE_REMOTE_MEDIA_ENABLED, 1),
        ScciCommand::set_int(oe.count, 1),
        ScciCommand::set_str(oe.server, loc.server.clone()),
        ScciCommand::set_str(oe.domain, loc.domain.clone()),
        ScciCommand::set_int(oe.share_type, loc.share_type.code()),
        ScciCommand::set_str(oe.share_name, loc.share_name.clone()),
        ScciCommand::set_str(oe.image_name, loc.image_name.clone()),
        ScciCommand::set_str(oe.user_name, loc.user_name.clone()),
        ScciCommand::set_secret(oe.password, loc.password.clone()),
    ]
}

// ---------------------------------------------------------------------------
// Settings dump
// ---------------------------------------------------------------------------

/// The parsed `/iRMC_Settings.pre?P45=1&SAVE_DATA=1` dump: ConfigSpace item
/// (OE) -> value. Items without a `<DATA>` child read as the empty string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    items: BTreeMap<u16, String>,
}

impl fmt::Debug for Settings {
    // The dump may contain share passwords: list the item ids only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field(
                "items",
                &self
                    .items
                    .keys()
                    .map(|k| format!("{k:04X}"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One drive's settings as read back (password deliberately absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaView {
    /// Image server.
    pub server: String,
    /// Share user.
    pub user_name: String,
    /// Share user domain.
    pub domain: String,
    /// Share type, when set and valid.
    pub share_type: Option<ShareType>,
    /// Share name.
    pub share_name: String,
    /// Image name.
    pub image_name: String,
}

impl MediaView {
    /// Server, share name and image name are all non-empty: the condition
    /// under which a real iRMC accepts an eject.
    pub fn is_configured(&self) -> bool {
        !self.server.trim().is_empty()
            && !self.share_name.trim().is_empty()
            && !self.image_name.trim().is_empty()
    }
}

impl Settings {
    /// Parses the dump.
    pub fn parse(doc: &str) -> Result<Self, WireError> {
        let mut items = BTreeMap::new();
        for cmd in parse_cmdseq(doc)? {
            if cmd.oe != 0 {
                items.insert(cmd.oe, cmd.data.unwrap_or_default());
            }
        }
        Ok(Self { items })
    }

    /// Builds a settings object from pairs (tests, simulators).
    pub fn from_items(items: impl IntoIterator<Item = (u16, String)>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// The value of item `oe`.
    pub fn get(&self, oe: u16) -> Option<&str> {
        self.items.get(&oe).map(String::as_str)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the dump held no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// One drive's view.
    pub fn media(&self, kind: MediaKind) -> MediaView {
        let oe = kind.oes();
        let s = |id: u16| self.get(id).unwrap_or_default().trim().to_owned();
        MediaView {
            server: s(oe.server),
            user_name: s(oe.user_name),
            domain: s(oe.domain),
            share_type: self
                .get(oe.share_type)
                .and_then(|v| v.trim().parse().ok())
                .and_then(ShareType::from_code),
            share_name: s(oe.share_name),
            image_name: s(oe.image_name),
        }
    }

    /// CD view.
    pub fn cd(&self) -> MediaView {
        self.media(MediaKind::Cd)
    }

    /// FD view.
    pub fn fd(&self) -> MediaView {
        self.media(MediaKind::Fd)
    }

    /// HD view.
    pub fn hd(&self) -> MediaView {
        self.media(MediaKind::Hd)
    }
}

// ---------------------------------------------------------------------------
// report.xml
// ---------------------------------------------------------------------------

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
    let mc = root
        .path("System/ManagementControllers/iRMC")
        .ok_or(WireError::NoManagementController)?;
    let model = mc
        .attr("Name")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| malformed("<iRMC> has no Name attribute"))?
        .to_owned();
    let firmware = mc
        .child("Firmware")
        .map(|f| f.text_trimmed().to_owned())
        .filter(|f| !f.is_empty())
        .ok_or_else(|| malformed("<iRMC> has no <Firmware>"))?;
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
/// 1.25 (deprecated from S4 9.62F / S5 1.60P), never on S6. The numeric head
/// of the firmware string is compared as a decimal number, as the reference
/// client does (`9.21F` -> 9.21).
pub fn has_virtual_fd(model: &str, firmware: &str) -> bool {
    let generation = model
        .trim()
        .strip_prefix("iRMC")
        .map(str::trim)
        .unwrap_or_default();
    let head: String = firmware
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let Ok(version) = head.parse::<f64>() else {
        return false;
    };
    match generation {
        "S4" => version <= 9.21,
        "S5" => version <= 1.25,
        _ => false,
    }
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

// ---------------------------------------------------------------------------
// Power (SCCI) and Redfish
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

/// Redfish `PowerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// `On`
    On,
    /// `Off`
    Off,
    /// `PoweringOn`
    PoweringOn,
    /// `PoweringOff`
    PoweringOff,
}

impl PowerState {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::Off => "Off",
            Self::PoweringOn => "PoweringOn",
            Self::PoweringOff => "PoweringOff",
        }
    }

    /// From the Redfish string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "On" => Some(Self::On),
            "Off" => Some(Self::Off),
            "PoweringOn" => Some(Self::PoweringOn),
            "PoweringOff" => Some(Self::PoweringOff),
            _ => None,
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Boot.BootSourceOverrideTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootTarget {
    /// Remote (virtual) CD.
    Cd,
    /// Local disk.
    Hdd,
    /// Network.
    Pxe,
    /// Clear the override.
    None,
}

impl BootTarget {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cd => "Cd",
            Self::Hdd => "Hdd",
            Self::Pxe => "Pxe",
            Self::None => "None",
        }
    }
}

/// `Boot.BootSourceOverrideEnabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootPersistence {
    /// Next boot only.
    Once,
    /// Every boot.
    Continuous,
}

impl BootPersistence {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "Once",
            Self::Continuous => "Continuous",
        }
    }
}

/// `Boot.BootSourceOverrideMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootMode {
    /// `UEFI`
    Uefi,
    /// `Legacy`
    Legacy,
}

impl BootMode {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uefi => "UEFI",
            Self::Legacy => "Legacy",
        }
    }
}

/// `ComputerSystem.Reset` `ResetType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetType {
    /// `On`
    On,
    /// `ForceOff`
    ForceOff,
    /// `GracefulShutdown`
    GracefulShutdown,
    /// `GracefulRestart`
    GracefulRestart,
    /// `ForceRestart`
    ForceRestart,
    /// `Nmi`
    Nmi,
    /// `PowerCycle`
    PowerCycle,
}

impl ResetType {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::ForceOff => "ForceOff",
            Self::GracefulShutdown => "GracefulShutdown",
            Self::GracefulRestart => "GracefulRestart",
            Self::ForceRestart => "ForceRestart",
            Self::Nmi => "Nmi",
            Self::PowerCycle => "PowerCycle",
        }
    }
}

/// Redfish system resource path on an iRMC.
pub const REDFISH_SYSTEM: &str = "/redfish/v1/Systems/0";
/// Redfish reset action path on an iRMC.
pub const REDFISH_RESET: &str = "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset";

/// The PATCH body for a boot override. `BootTarget::None` disables the
/// override and sends no mode.
pub fn boot_override_body(
    target: BootTarget,
    persistence: BootPersistence,
    mode: BootMode,
) -> String {
    let boot = if target == BootTarget::None {
        serde_json::json!({
            "BootSourceOverrideTarget": "None",
            "BootSourceOverrideEnabled": "Disabled",
        })
    } else {
        serde_json::json!({
            "BootSourceOverrideTarget": target.as_str(),
            "BootSourceOverrideEnabled": persistence.as_str(),
            "BootSourceOverrideMode": mode.as_str(),
        })
    };
    serde_json::json!({ "Boot": boot }).to_string()
}

/// The POST body for a reset action.
pub fn reset_body(kind: ResetType) -> String {
    serde_json::json!({ "ResetType": kind.as_str() }).to_string()
}

/// What we read from `GET /redfish/v1/Systems/0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    /// `PowerState`.
    pub power_state: PowerState,
    /// `Manufacturer`, if present.
    pub manufacturer: Option<String>,
    /// `Boot.BootSourceOverrideTarget`, if present.
    pub boot_target: Option<String>,
    /// `Boot.BootSourceOverrideEnabled`, if present.
    pub boot_enabled: Option<String>,
    /// `Boot.BootSourceOverrideMode`, if present.
    pub boot_mode: Option<String>,
}

/// Parses the Redfish system resource.
pub fn parse_system(body: &str) -> Result<SystemInfo, WireError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| malformed(format!("Redfish reply is not JSON: {e}")))?;
    let ps = v
        .get("PowerState")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("Redfish system has no PowerState"))?;
    let power_state =
        PowerState::parse(ps).ok_or_else(|| malformed(format!("unknown PowerState {ps:?}")))?;
    let s = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_owned);
    let boot = v.get("Boot");
    Ok(SystemInfo {
        power_state,
        manufacturer: s(v.get("Manufacturer")),
        boot_target: s(boot.and_then(|b| b.get("BootSourceOverrideTarget"))),
        boot_enabled: s(boot.and_then(|b| b.get("BootSourceOverrideEnabled"))),
        boot_mode: s(boot.and_then(|b| b.get("BootSourceOverrideMode"))),
    })
}
