//! SCCI wire format as a real iRMC speaks it: `<CMDSEQ>` parsing, opcode table,
//! `<Status>` replies and the `/iRMC_Settings.pre` dump; plus the execution of a parsed
//! command sequence against one node.
//!
//! Parsing is tolerant the way the firmware is: whitespace before the XML declaration,
//! comments between commands, opcodes by name or by hex code, `CDATA` and entities in
//! values. Execution stops at the first failing command and answers with that command's
//! error, the earlier commands staying applied (the iRMC does not roll back).
//!
//! ConfigSpace items (OE, hex): CD 1A60..1A68, FD 1A50..1A58, 1A80 remote media enabled
//! (SCCI.md). Hard-disk image items are not documented publicly; the simulator uses
//! 1A40..1A48 by analogy (server, user, password, domain, share type, share name, image
//! name, attach mode, number of drives), matching the `irmc` client crate.

use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::node::{MediaKind, NodeHandle, PowerState, Secret, ShareType};
use crate::report::Model;

/// One SCCI opcode: canonical name and hex code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opcode {
    pub name: &'static str,
    pub code: u16,
}

/// Every opcode the simulator understands. `ConfigSpace` appears twice (GET E001, SET
/// E002); by name the `Type` attribute decides.
pub const OPCODES: &[Opcode] = &[
    Opcode {
        name: "ConfigSpace",
        code: 0xE001,
    },
    Opcode {
        name: "ConfigSpace",
        code: 0xE002,
    },
    Opcode {
        name: "PowerOnCabinet",
        code: 0x0111,
    },
    Opcode {
        name: "PowerOffCabinet",
        code: 0x0112,
    },
    Opcode {
        name: "PowerOffOnCabinet",
        code: 0x0113,
    },
    Opcode {
        name: "ResetFirmware",
        code: 0x0203,
    },
    Opcode {
        name: "ResetServer",
        code: 0x0204,
    },
    Opcode {
        name: "RequestShutdownAndOff",
        code: 0x0205,
    },
    Opcode {
        name: "RequestShutdownAndReset",
        code: 0x0206,
    },
    Opcode {
        name: "ShutdownRequestCancelled",
        code: 0x0209,
    },
    Opcode {
        name: "RaiseNMI",
        code: 0x020C,
    },
    Opcode {
        name: "ConnectRemoteFdImage",
        code: 0x0251,
    },
    Opcode {
        name: "ConnectRemoteCdImage",
        code: 0x0252,
    },
    Opcode {
        name: "ConnectRemoteHdImage",
        code: 0x0253,
    },
];

/// A parsed operation, independent of how the sender spelled the opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ConfigGet,
    ConfigSet,
    PowerOn,
    PowerOff,
    PowerCycle,
    ResetFirmware,
    ResetServer,
    SoftOff,
    SoftReset,
    CancelShutdown,
    Nmi,
    Connect(MediaKind),
}

impl Op {
    /// Canonical opcode name (for counters and error replies).
    pub fn name(self) -> &'static str {
        match self {
            Op::ConfigGet | Op::ConfigSet => "ConfigSpace",
            Op::PowerOn => "PowerOnCabinet",
            Op::PowerOff => "PowerOffCabinet",
            Op::PowerCycle => "PowerOffOnCabinet",
            Op::ResetFirmware => "ResetFirmware",
            Op::ResetServer => "ResetServer",
            Op::SoftOff => "RequestShutdownAndOff",
            Op::SoftReset => "RequestShutdownAndReset",
            Op::CancelShutdown => "ShutdownRequestCancelled",
            Op::Nmi => "RaiseNMI",
            Op::Connect(MediaKind::Fd) => "ConnectRemoteFdImage",
            Op::Connect(MediaKind::Cd) => "ConnectRemoteCdImage",
            Op::Connect(MediaKind::Hd) => "ConnectRemoteHdImage",
        }
    }

    /// Resolve `OC` (name or hex) plus `Type`.
    pub fn resolve(oc: &str, ty: &str) -> Option<Op> {
        let by_hex = u16::from_str_radix(oc.trim_start_matches("0x"), 16)
            .ok()
            .filter(|_| oc.len() >= 3 && oc.chars().all(|c| c.is_ascii_hexdigit() || c == 'x'));
        let code = match by_hex {
            Some(code) => code,
            None => {
                let op = OPCODES.iter().find(|o| o.name.eq_ignore_ascii_case(oc))?;
                if op.name == "ConfigSpace" {
                    return Some(if ty.eq_ignore_ascii_case("GET") {
                        Op::ConfigGet
                    } else {
                        Op::ConfigSet
                    });
                }
                op.code
            }
        };
        Some(match code {
            0xE001 => Op::ConfigGet,
            0xE002 => Op::ConfigSet,
            0x0111 => Op::PowerOn,
            0x0112 => Op::PowerOff,
            0x0113 => Op::PowerCycle,
            0x0203 => Op::ResetFirmware,
            0x0204 => Op::ResetServer,
            0x0205 => Op::SoftOff,
            0x0206 => Op::SoftReset,
            0x0209 => Op::CancelShutdown,
            0x020C => Op::Nmi,
            0x0251 => Op::Connect(MediaKind::Fd),
            0x0252 => Op::Connect(MediaKind::Cd),
            0x0253 => Op::Connect(MediaKind::Hd),
            _ => return None,
        })
    }
}

/// One `<CMD>` as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// `OC` exactly as sent.
    pub oc: String,
    /// `OE` as sent (hex item id or "0").
    pub oe: String,
    pub oi: String,
    /// `Type` (SET/GET), empty when absent.
    pub ty: String,
    /// `<DATA>` text (entities resolved), `None` without a DATA child.
    pub data: Option<String>,
}

/// Why a request body is not a command sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Parse a `<CMDSEQ>` document (or a lone `<CMD>`).
pub fn parse_cmdseq(body: &str) -> Result<Vec<Command>, ParseError> {
    // Senders put blank lines before the declaration; a strict parser rejects that.
    let mut reader = Reader::from_str(body.trim_start());
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.check_comments = false;
    let mut out = Vec::new();
    let mut cur: Option<Command> = None;
    let mut in_data = false;
    let mut data = String::new();
    let mut saw_root = false;
    loop {
        let ev = reader.read_event().map_err(|e| {
            ParseError(format!(
                "XML error at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = e.name();
                let name = name.as_ref().to_string();
                match name.as_str() {
                    "CMDSEQ" => saw_root = true,
                    "CMD" => {
                        saw_root = true;
                        let mut c = Command::default();
                        for a in e.attributes() {
                            let a = a.map_err(|err| ParseError(format!("bad attribute: {err}")))?;
                            let v = a
                                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map_err(|err| ParseError(format!("bad attribute value: {err}")))?
                                .into_owned();
                            match a.key.as_ref() {
                                "OC" => c.oc = v,
                                "OE" => c.oe = v,
                                "OI" => c.oi = v,
                                "Type" => c.ty = v,
                                _ => {}
                            }
                        }
                        if c.oc.is_empty() {
                            return Err(ParseError("CMD without OC attribute".into()));
                        }
                        if empty {
                            out.push(c);
                        } else {
                            cur = Some(c);
                        }
                    }
                    "DATA" if cur.is_some() => {
                        data.clear();
                        if empty {
                            if let Some(c) = cur.as_mut() {
                                c.data = Some(String::new());
                            }
                        } else {
                            in_data = true;
                        }
                    }
                    _ => {}
                }
            }
            Event::End(ref e) => match e.name().as_ref() {
                "DATA" if in_data => {
                    in_data = false;
                    if let Some(c) = cur.as_mut() {
                        c.data = Some(std::mem::take(&mut data));
                    }
                }
                "CMD" => {
                    if let Some(c) = cur.take() {
                        out.push(c);
                    }
                }
                _ => {}
            },
            Event::Text(t) if in_data => data.push_str(&t.xml10_content()),
            Event::CData(t) if in_data => data.push_str(&t.into_inner()),
            Event::GeneralRef(r) if in_data => {
                if let Some(ch) = r
                    .resolve_char_ref()
                    .map_err(|err| ParseError(format!("bad character reference: {err}")))?
                {
                    data.push(ch);
                } else {
                    let name = r.into_inner();
                    let v = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| ParseError(format!("unknown entity &{name};")))?;
                    data.push_str(v);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(ParseError("no CMDSEQ or CMD element".into()));
    }
    if cur.is_some() {
        return Err(ParseError("unterminated CMD element".into()));
    }
    Ok(out)
}

/// Escape text for element content and attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The exact success reply of a real iRMC.
pub const OK_REPLY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>";

/// An SCCI failure: Value, the failing command's identity and the error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScciFailure {
    pub value: u32,
    pub oc: String,
    pub oe: String,
    pub text: String,
}

/// Error values the simulator uses. Only 31 is documented from a capture; the others
/// are the simulator's own choice, stable so tests can rely on them.
pub mod values {
    /// ServerView agent not connected (soft power without agent).
    pub const AGENT_NOT_CONNECTED: u32 = 31;
    /// Unknown opcode / item, malformed command.
    pub const INVALID_COMMAND: u32 = 1;
    /// Invalid data for the command.
    pub const INVALID_DATA: u32 = 2;
    /// Remote media operation impossible in the current configuration.
    pub const MEDIA: u32 = 4;
    /// The iRMC is still busy with an earlier power action or media connect: error 5,
    /// "Input/Output error", as python-scciclient names the status a real iRMC returns
    /// to POWER_ON/POWER_OFF/POWER_RESET sent in a tight sequence.
    pub const BUSY: u32 = 5;
    /// Remote storage refused: no licence key installed.
    pub const LICENCE: u32 = 6;
    /// Injected error.
    pub const INJECTED: u32 = 99;
}

impl ScciFailure {
    /// The reply document a real iRMC sends for this failure.
    pub fn reply(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>{v}</Value><Severity>Error</Severity><Message>Error {v} (Import of settings in WinSCU XML format failed) occurred</Message><Error Context=\"SCCI\" OC=\"{oc}\" OE=\"{oe}\" OI=\"0\">{t}</Error></Status>",
            v = self.value,
            oc = escape(&self.oc),
            oe = escape(&self.oe),
            t = escape(&self.text),
        )
    }
}

/// A successful reply that also carries a value (ConfigSpace GET): the command comes
/// back as a `CMD` child naming its `OE`, with its `DATA` and `STATUS`, which is where
/// Fujitsu's own tools (the Ansible modules' SCCI reader) look for a read value.
fn ok_with_data(c: &Command, value: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message><CMD Context=\"SCCI\" OC=\"{oc}\" OE=\"{oe}\" OI=\"0\" Type=\"GET\"><DATA Type=\"xsd::string\">{v}</DATA><STATUS>0</STATUS></CMD></Status>",
        oc = escape(&c.oc),
        oe = escape(&c.oe.trim().to_ascii_uppercase()),
        v = escape(value)
    )
}

/// Which media field a ConfigSpace item addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaField {
    Server,
    User,
    Password,
    Domain,
    ShareType,
    ShareName,
    ImageName,
    AttachMode,
    Drives,
}

/// Map an OE to (drive, field). 1A4x = HD (by analogy), 1A5x = FD, 1A6x = CD.
pub fn media_item(oe: u16) -> Option<(MediaKind, MediaField)> {
    let kind = match oe & 0xFFF0 {
        0x1A40 => MediaKind::Hd,
        0x1A50 => MediaKind::Fd,
        0x1A60 => MediaKind::Cd,
        _ => return None,
    };
    let field = match oe & 0xF {
        0 => MediaField::Server,
        1 => MediaField::User,
        2 => MediaField::Password,
        3 => MediaField::Domain,
        4 => MediaField::ShareType,
        5 => MediaField::ShareName,
        6 => MediaField::ImageName,
        7 => MediaField::AttachMode,
        8 => MediaField::Drives,
        _ => return None,
    };
    Some((kind, field))
}

/// ConfigSpace item: remote media enabled.
pub const OE_REMOTE_MEDIA_ENABLED: u16 = 0x1A80;

/// ConfigSpace item: the iRMC licence key (`ConfBMCLicenseKey`, as Fujitsu's
/// `irmc_license` Ansible module reads and writes it). Empty when no licence is installed.
pub const OE_LICENCE_KEY: u16 = 0x1980;

/// The licence key a licensed simulated iRMC reports (its shape only: five groups).
pub const SIM_LICENCE_KEY: &str = "SIMUL-ATEDI-RMCAD-VANCE-DPACK";

/// Static per-simulator facts command execution needs.
#[derive(Clone, Copy, Debug)]
pub struct ExecEnv {
    pub model: Model,
    /// Firmware has a virtual floppy (S4 <= 9.21F, S5 <= 1.25P).
    pub has_virtual_fd: bool,
    /// Fleet-wide busy window after a power action or a media connect (zero: none);
    /// [`crate::NodeState::busy_ms`] overrides it per node.
    pub busy: std::time::Duration,
    /// Fleet-wide: a licence key is installed; [`crate::NodeState::licensed`] overrides it.
    pub licensed: bool,
    /// Fleet-wide: Redfish is served; [`crate::NodeState::redfish`] overrides it.
    pub redfish: bool,
}

impl ExecEnv {
    fn busy_window(&self, s: &crate::NodeState) -> std::time::Duration {
        s.busy_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(self.busy)
    }
}

impl Op {
    /// Commands a real iRMC refuses while it is busy, and that make it busy: power
    /// actions and remote image connects.
    fn uses_busy_window(self) -> bool {
        matches!(
            self,
            Op::PowerOn
                | Op::PowerOff
                | Op::PowerCycle
                | Op::ResetServer
                | Op::SoftOff
                | Op::SoftReset
                | Op::Connect(_)
        )
    }
}

/// Execute a command sequence on a node; returns the reply body. Counters are bumped
/// per command. Passwords are never logged.
pub fn execute(node: &NodeHandle, env: ExecEnv, cmds: &[Command]) -> String {
    let mut reply = None;
    for c in cmds {
        match execute_one(node, env, c) {
            Ok(Some(data)) => reply = Some(ok_with_data(c, &data)),
            Ok(None) => {}
            Err(f) => {
                tracing::info!(node = node.index(), bmc = %node.address(), oc = %f.oc, oe = %f.oe, value = f.value, error = %f.text, "SCCI command failed");
                return f.reply();
            }
        }
    }
    reply.unwrap_or_else(|| OK_REPLY.to_string())
}

fn parse_int(data: &str) -> Option<i64> {
    data.trim().parse().ok()
}

fn execute_one(
    node: &NodeHandle,
    env: ExecEnv,
    c: &Command,
) -> Result<Option<String>, ScciFailure> {
    let fail = |value: u32, text: &str| ScciFailure {
        value,
        oc: c.oc.clone(),
        oe: if c.oe.is_empty() {
            "0".into()
        } else {
            c.oe.clone()
        },
        text: text.to_string(),
    };
    let Some(op) = Op::resolve(&c.oc, &c.ty) else {
        node.update(|s| *s.counters.scci.entry("unknown".into()).or_default() += 1);
        return Err(fail(values::INVALID_COMMAND, "Unknown SCCI opcode"));
    };
    node.update(|s| *s.counters.scci.entry(op.name().to_string()).or_default() += 1);
    let data = c.data.as_deref().unwrap_or("");
    if op.uses_busy_window() {
        let now = std::time::Instant::now();
        let busy = node.update(|s| {
            let busy = s.busy_until.is_some_and(|t| t > now);
            if busy {
                s.counters.busy_refused += 1;
            }
            busy
        });
        if busy {
            return Err(fail(values::BUSY, "Input/Output error"));
        }
        let r = execute_op(node, env, c, op, data, fail);
        if r.is_ok() {
            node.update(|s| {
                let window = env.busy_window(s);
                if !window.is_zero() {
                    s.busy_until = Some(std::time::Instant::now() + window);
                }
            });
        }
        return r;
    }
    execute_op(node, env, c, op, data, fail)
}

fn execute_op(
    node: &NodeHandle,
    env: ExecEnv,
    c: &Command,
    op: Op,
    data: &str,
    fail: impl Fn(u32, &str) -> ScciFailure,
) -> Result<Option<String>, ScciFailure> {
    match op {
        Op::ConfigGet | Op::ConfigSet => {
            let oe = u16::from_str_radix(c.oe.trim(), 16)
                .map_err(|_| fail(values::INVALID_COMMAND, "Invalid OE"))?;
            if op == Op::ConfigGet {
                return Ok(Some(config_get(node, env, oe)));
            }
            config_set(node, env, oe, c.data.as_deref())
                .map_err(|t| fail(values::INVALID_DATA, t))?;
            Ok(None)
        }
        Op::PowerOn => {
            node.power_on();
            tracing::debug!(node = node.index(), bmc = %node.address(), "power on");
            Ok(None)
        }
        Op::PowerOff => {
            node.power_off();
            Ok(None)
        }
        Op::PowerCycle => {
            node.reset("power-cycle");
            Ok(None)
        }
        Op::ResetServer => {
            node.reset("reset");
            Ok(None)
        }
        Op::ResetFirmware | Op::CancelShutdown => Ok(None),
        Op::Nmi => Ok(None),
        Op::SoftOff | Op::SoftReset => {
            let (power, agent) = node.update(|s| (s.power, s.serverview_agent));
            if power == PowerState::Off && op == Op::SoftOff {
                return Ok(None);
            }
            if !agent {
                return Err(fail(
                    values::AGENT_NOT_CONNECTED,
                    "ServerView Agent not connected",
                ));
            }
            if op == Op::SoftOff {
                node.power_off();
            } else {
                node.reset("soft-reset");
            }
            Ok(None)
        }
        Op::Connect(kind) => {
            if kind == MediaKind::Fd && !env.has_virtual_fd {
                return Err(fail(
                    values::MEDIA,
                    "Virtual floppy is not supported by this iRMC firmware",
                ));
            }
            let want = match parse_int(data) {
                Some(1) => true,
                Some(0) => false,
                _ => {
                    return Err(fail(
                        values::INVALID_DATA,
                        "Invalid DATA for remote image connect (0 or 1)",
                    ));
                }
            };
            node.update(|s| {
                if want && !s.licensed.unwrap_or(env.licensed) {
                    return Err(fail(
                        values::LICENCE,
                        "Remote storage is not available: no valid iRMC license key installed",
                    ));
                }
                if want && !s.remote_media_enabled {
                    return Err(fail(values::MEDIA, "Remote media is disabled"));
                }
                let m = s.media_mut(kind);
                if m.is_incomplete() {
                    return Err(fail(
                        values::MEDIA,
                        "Remote image server, share name or image name is not configured",
                    ));
                }
                m.connected = want;
                Ok(())
            })?;
            tracing::debug!(node = node.index(), bmc = %node.address(), drive = kind.as_str(), connected = want, "remote image");
            Ok(None)
        }
    }
}

fn config_get(node: &NodeHandle, env: ExecEnv, oe: u16) -> String {
    node.update(|s| {
        if oe == OE_LICENCE_KEY {
            let licensed = s.licensed.unwrap_or(env.licensed);
            return if licensed { SIM_LICENCE_KEY } else { "" }.to_string();
        }
        if oe == OE_REMOTE_MEDIA_ENABLED {
            return if s.remote_media_enabled { "1" } else { "0" }.to_string();
        }
        if let Some((kind, field)) = media_item(oe) {
            let m = s.media(kind);
            return match field {
                MediaField::Server => m.server.clone(),
                MediaField::User => m.user.clone(),
                // A BMC does not hand out passwords.
                MediaField::Password => String::new(),
                MediaField::Domain => m.domain.clone(),
                MediaField::ShareType => m.share_type.code().to_string(),
                MediaField::ShareName => m.share_name.clone(),
                MediaField::ImageName => m.image_name.clone(),
                MediaField::AttachMode => m.attach_mode.to_string(),
                MediaField::Drives => m.drives.to_string(),
            };
        }
        s.config_space
            .get(&format!("{oe:04X}"))
            .cloned()
            .unwrap_or_default()
    })
}

fn config_set(
    node: &NodeHandle,
    env: ExecEnv,
    oe: u16,
    data: Option<&str>,
) -> Result<(), &'static str> {
    let data = data.ok_or("ConfigSpace SET without DATA")?;
    node.update(|s| {
        if oe == OE_REMOTE_MEDIA_ENABLED {
            s.remote_media_enabled = parse_int(data).ok_or("Invalid integer")? != 0;
            return Ok(());
        }
        if let Some((kind, field)) = media_item(oe) {
            if kind == MediaKind::Fd && !env.has_virtual_fd {
                return Err("Virtual floppy is not supported by this iRMC firmware");
            }
            let m = s.media_mut(kind);
            match field {
                MediaField::Server => m.server = data.to_string(),
                MediaField::User => m.user = data.to_string(),
                MediaField::Password => m.password = Secret::new(data),
                MediaField::Domain => m.domain = data.to_string(),
                MediaField::ShareType => {
                    m.share_type = parse_int(data)
                        .and_then(ShareType::from_code)
                        .ok_or("Invalid share type (0 = NFS, 1 = CIFS)")?
                }
                MediaField::ShareName => m.share_name = data.to_string(),
                MediaField::ImageName => m.image_name = data.to_string(),
                MediaField::AttachMode => {
                    m.attach_mode = parse_int(data)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or("Invalid integer")?
                }
                MediaField::Drives => {
                    m.drives = parse_int(data)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or("Invalid integer")?
                }
            }
            return Ok(());
        }
        s.config_space.insert(format!("{oe:04X}"), data.to_string());
        Ok(())
    })
}

/// The `/iRMC_Settings.pre?P45=1&SAVE_DATA=1` dump: every remote-image item of the three
/// drives (passwords omitted, as their values are write-only) plus 1A80 and any other
/// item written, each `CMD` with a `DATA` child (empty values give an empty element) and
/// `<STATUS>0</STATUS>`.
pub fn settings_dump(node: &NodeHandle) -> String {
    let s = node.state();
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<CMDSEQ>\n");
    let mut item = |oe: u16, ty: &str, v: &str| {
        let _ = writeln!(
            out,
            "  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"{oe:04X}\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::{ty}\">{}</DATA>\n    <STATUS>0</STATUS>\n  </CMD>",
            escape(v)
        );
    };
    item(
        OE_REMOTE_MEDIA_ENABLED,
        "integer",
        if s.remote_media_enabled { "1" } else { "0" },
    );
    for (base, kind) in [
        (0x1A60u16, MediaKind::Cd),
        (0x1A50, MediaKind::Fd),
        (0x1A40, MediaKind::Hd),
    ] {
        let m = s.media(kind);
        item(base, "string", &m.server);
        item(base + 1, "string", &m.user);
        item(base + 3, "string", &m.domain);
        item(base + 4, "integer", &m.share_type.code().to_string());
        item(base + 5, "string", &m.share_name);
        item(base + 6, "string", &m.image_name);
        item(base + 7, "integer", &m.attach_mode.to_string());
        item(base + 8, "integer", &m.drives.to_string());
    }
    for (oe, v) in &s.config_space {
        if let Ok(oe) = u16::from_str_radix(oe, 16) {
            item(oe, "string", v);
        }
    }
    out.push_str("</CMDSEQ>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_hex() {
        assert_eq!(Op::resolve("PowerOnCabinet", "SET"), Some(Op::PowerOn));
        assert_eq!(Op::resolve("0111", "SET"), Some(Op::PowerOn));
        assert_eq!(Op::resolve("E001", ""), Some(Op::ConfigGet));
        assert_eq!(Op::resolve("E002", "GET"), Some(Op::ConfigSet));
        assert_eq!(Op::resolve("ConfigSpace", "GET"), Some(Op::ConfigGet));
        assert_eq!(Op::resolve("ConfigSpace", "SET"), Some(Op::ConfigSet));
        assert_eq!(Op::resolve("020C", "SET"), Some(Op::Nmi));
        assert_eq!(Op::resolve("0253", "SET"), Some(Op::Connect(MediaKind::Hd)));
        assert_eq!(Op::resolve("FooBar", "SET"), None);
        assert_eq!(Op::resolve("0999", "SET"), None);
        for o in OPCODES {
            let hex = format!("{:04X}", o.code);
            let op = Op::resolve(&hex, "SET").unwrap();
            assert_eq!(op.name(), o.name);
        }
    }

    #[test]
    fn parses_whitespace_comments_cdata_entities() {
        let body = "\n\n  <?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n<CMDSEQ>\n <!-- first -->\n <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A62\" OI=\"0\" Type=\"SET\">\n  <DATA Type=\"xsd::string\" Encrypted=\"0\">a&lt;b&amp;c&#x21;</DATA>\n </CMD>\n <!-- second -->\n <CMD Context=\"SCCI\" OC=\"E002\" OE=\"1A60\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\"><![CDATA[x<y]]></DATA></CMD>\n <CMD Context=\"SCCI\" OC=\"PowerOnCabinet\" OE=\"0\" OI=\"0\" Type=\"SET\"/>\n</CMDSEQ>\n";
        let cmds = parse_cmdseq(body).unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0].oe, "1A62");
        assert_eq!(cmds[0].data.as_deref(), Some("a<b&c!"));
        assert_eq!(cmds[1].data.as_deref(), Some("x<y"));
        assert_eq!(cmds[2].oc, "PowerOnCabinet");
        assert_eq!(cmds[2].data, None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_cmdseq("not xml").is_err());
        assert!(parse_cmdseq("<CMDSEQ><CMD OC=\"X\"></CMDSEQ>").is_err());
        assert!(parse_cmdseq("<CMDSEQ><CMD/></CMDSEQ>").is_err());
    }

    #[test]
    fn failure_reply_shape() {
        let f = ScciFailure {
            value: 31,
            oc: "RequestShutdownAndOff".into(),
            oe: "0".into(),
            text: "ServerView Agent not connected".into(),
        };
        assert_eq!(
            f.reply(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>31</Value><Severity>Error</Severity><Message>Error 31 (Import of settings in WinSCU XML format failed) occurred</Message><Error Context=\"SCCI\" OC=\"RequestShutdownAndOff\" OE=\"0\" OI=\"0\">ServerView Agent not connected</Error></Status>"
        );
    }

    #[test]
    fn media_items() {
        assert_eq!(
            media_item(0x1A62),
            Some((MediaKind::Cd, MediaField::Password))
        );
        assert_eq!(
            media_item(0x1A55),
            Some((MediaKind::Fd, MediaField::ShareName))
        );
        assert_eq!(
            media_item(0x1A46),
            Some((MediaKind::Hd, MediaField::ImageName))
        );
        assert_eq!(media_item(0x1A69), None);
        assert_eq!(media_item(0x1A80), None);
    }
}
