//! `vmedia bmc`: talk to one iRMC directly (SCCI + Redfish), no coordinator.
//!
//! - `info`: model, firmware, virtual floppy support, power state.
//! - `power on|off|reset|cycle|soft-off|soft-reboot|nmi|status [--transport ...]`.
//! - `media attach-cd|detach-cd|attach-fd|detach-fd|attach-hd|detach-hd`.
//! - `boot cd|hdd|pxe [--persistent] [--uefi|--legacy] [--transport ...]` (Redfish
//!   override, or IPMI boot flags with the iRMC's remote CD/DVD).
//!
//! Every subcommand takes the same connection flags ([`BmcConnArgs`]).
//! Passwords can come from a file (`--password-file`, `--share-password-file`)
//! so they need not sit in shell history; they are never printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use irmc::ipmi::ChassisControl;
use irmc::{
    AuthMethod, BmcConfig, BootMode, BootPersistence, BootTarget, IrmcClient, MediaKind,
    MediaLocation, PowerAction, Scheme, Secret, ShareType, TlsVerify, Transport,
};

/// `vmedia bmc ...`
#[derive(Debug, clap::Subcommand)]
pub enum BmcCommand {
    /// Show model, firmware, virtual floppy support and power state
    Info {
        #[command(flatten)]
        conn: BmcConnArgs,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Power actions (SCCI, or IPMI Chassis Control with --transport ipmi) and power
    /// status (Redfish or IPMI Get Chassis Status, per --transport)
    Power {
        /// What to do
        #[arg(value_enum)]
        action: PowerArg,
        #[command(flatten)]
        via: TransportArgs,
        #[command(flatten)]
        conn: BmcConnArgs,
    },
    /// Attach or detach virtual media (the iRMC reads it from an NFS/CIFS share)
    #[command(subcommand)]
    Media(MediaCommand),
    /// Set the boot device for the next (or every) boot: a Redfish boot override, or
    /// IPMI Set System Boot Options (cd = the iRMC's remote CD/DVD, 0x20)
    Boot {
        /// Boot target
        #[arg(value_enum)]
        target: BootArg,
        /// Keep the override for every boot (default: next boot only)
        #[arg(long)]
        persistent: bool,
        /// UEFI boot mode (default)
        #[arg(long, conflicts_with = "legacy")]
        uefi: bool,
        /// Legacy BIOS boot mode
        #[arg(long)]
        legacy: bool,
        #[command(flatten)]
        via: TransportArgs,
        #[command(flatten)]
        conn: BmcConnArgs,
    },
}

/// `--transport` and `--ipmi-port` of `vmedia bmc power` and `vmedia bmc boot`.
#[derive(Clone, Debug, clap::Args)]
pub struct TransportArgs {
    /// How power state and the boot device are done (irmc_transport): redfish (HTTPS,
    /// one request each), ipmi (IPMI over LAN, UDP: one RMCP+ session of 7 exchanges
    /// each), or auto (Redfish when the iRMC has it, else IPMI). Power actions use SCCI
    /// except with ipmi: an SCCI power command is one HTTPS POST, and its soft variants
    /// go through the ServerView agent in the OS, which IPMI's ACPI soft-off does not.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
    /// IPMI-over-LAN UDP port (623 on a real iRMC)
    #[arg(long, default_value_t = 623)]
    pub ipmi_port: u16,
}

/// `--transport`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// Redfish over HTTPS
    Redfish,
    /// IPMI 2.0 over LAN (RMCP+)
    Ipmi,
    /// Redfish when available, else IPMI
    Auto,
}

impl TransportArgs {
    fn apply(&self, cfg: &mut BmcConfig) {
        cfg.transport = match self.transport {
            TransportArg::Redfish => Transport::Redfish,
            TransportArg::Ipmi => Transport::Ipmi,
            TransportArg::Auto => Transport::Auto,
        };
        cfg.ipmi.port = self.ipmi_port;
    }
}

/// `vmedia bmc power <action>`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PowerArg {
    /// Power on
    On,
    /// Hard power off
    Off,
    /// Hard reset
    Reset,
    /// Power cycle
    Cycle,
    /// Graceful shutdown (needs the ServerView agent in the OS)
    SoftOff,
    /// Graceful reboot (needs the ServerView agent in the OS)
    SoftReboot,
    /// Pulse NMI
    Nmi,
    /// Print the power state
    Status,
}

/// `vmedia bmc boot <target>`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootArg {
    /// The remote (virtual) CD
    Cd,
    /// The local disk
    Hdd,
    /// The network
    Pxe,
}

/// `vmedia bmc media ...`
#[derive(Debug, clap::Subcommand)]
pub enum MediaCommand {
    /// Point the virtual CD at an ISO on a share and connect it
    AttachCd(AttachArgs),
    /// Disconnect the virtual CD (skipped when it was never configured)
    DetachCd(DetachArgs),
    /// Point the virtual floppy at an image on a share and connect it
    AttachFd(AttachArgs),
    /// Disconnect the virtual floppy
    DetachFd(DetachArgs),
    /// Point the virtual hard disk at an image on a share and connect it
    AttachHd(AttachArgs),
    /// Disconnect the virtual hard disk
    DetachHd(DetachArgs),
}

/// Connection flags shared by every `vmedia bmc` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct BmcConnArgs {
    /// iRMC address (irmc_address)
    #[arg(long)]
    pub address: String,
    /// iRMC user (irmc_username)
    #[arg(long)]
    pub username: String,
    /// iRMC password (irmc_password); prefer --password-file
    #[arg(
        long,
        conflicts_with = "password_file",
        required_unless_present = "password_file"
    )]
    pub password: Option<String>,
    /// File holding the iRMC password (one line)
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// 443 (https) or 80 (http) on a real iRMC; any port is accepted for testing
    #[arg(long, default_value_t = 443)]
    pub port: u16,
    /// HTTP authentication (irmc_auth_method)
    #[arg(long, value_enum, default_value_t = AuthArg::Basic)]
    pub auth: AuthArg,
    /// Force plain http (default: http only on port 80)
    #[arg(long)]
    pub http: bool,
    /// Verify the iRMC certificate against this CA file (default: system roots)
    #[arg(long, conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Do not verify the iRMC certificate
    #[arg(long)]
    pub insecure: bool,
    /// Request timeout in seconds (irmc_client_timeout)
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// `--auth`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthArg {
    /// HTTP Basic
    Basic,
    /// HTTP Digest
    Digest,
}

/// `--share-type`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShareTypeArg {
    /// CIFS/SMB share
    Cifs,
    /// NFS export
    Nfs,
}

/// `vmedia bmc media attach-*`
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub conn: BmcConnArgs,
    /// Image server address as the iRMC sees it
    #[arg(long)]
    pub server: String,
    /// Share protocol
    #[arg(long, value_enum, default_value_t = ShareTypeArg::Cifs)]
    pub share_type: ShareTypeArg,
    /// CIFS share name or NFS export path
    #[arg(long)]
    pub share_name: String,
    /// Image path relative to the share
    #[arg(long)]
    pub image: String,
    /// Share user (CIFS)
    #[arg(long, default_value = "")]
    pub share_user: String,
    /// Share password (CIFS); prefer --share-password-file
    #[arg(long, conflicts_with = "share_password_file")]
    pub share_password: Option<String>,
    /// File holding the share password (one line)
    #[arg(long)]
    pub share_password_file: Option<PathBuf>,
    /// Share user domain (CIFS)
    #[arg(long, default_value = "")]
    pub share_domain: String,
}

/// `vmedia bmc media detach-*`
#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    #[command(flatten)]
    pub conn: BmcConnArgs,
}

/// Reads a password file: its first line, without the line ending.
fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    Ok(Secret::new(line))
}

impl BmcConnArgs {
    /// The library config these flags describe.
    pub fn to_config(&self) -> anyhow::Result<BmcConfig> {
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Secret::new(p.clone()),
            (None, Some(f)) => read_secret_file(f, "--password-file")?,
            (None, None) => anyhow::bail!("one of --password or --password-file is required"),
        };
        if self.timeout == 0 {
            anyhow::bail!("--timeout must be greater than 0");
        }
        let mut cfg = BmcConfig::new(self.address.clone(), self.username.clone(), password);
        cfg.port = self.port;
        cfg.scheme = if self.http {
            Scheme::Http
        } else {
            Scheme::for_port(self.port)
        };
        cfg.auth = match self.auth {
            AuthArg::Basic => AuthMethod::Basic,
            AuthArg::Digest => AuthMethod::Digest,
        };
        cfg.timeout = Duration::from_secs(self.timeout);
        cfg.verify = match (&self.ca, self.insecure) {
            (Some(ca), _) => TlsVerify::CaFile(ca.clone()),
            (None, true) => TlsVerify::Insecure,
            (None, false) => TlsVerify::System,
        };
        Ok(cfg)
    }

    fn client(&self) -> anyhow::Result<IrmcClient> {
        Ok(IrmcClient::new(self.to_config()?)?)
    }

    fn client_with(&self, t: &TransportArgs) -> anyhow::Result<IrmcClient> {
        let mut cfg = self.to_config()?;
        t.apply(&mut cfg);
        Ok(IrmcClient::new(cfg)?)
    }
}

impl AttachArgs {
    fn location(&self) -> anyhow::Result<MediaLocation> {
        let password = match (&self.share_password, &self.share_password_file) {
            (Some(p), _) => Secret::new(p.clone()),
            (None, Some(f)) => read_secret_file(f, "--share-password-file")?,
            (None, None) => Secret::default(),
        };
        Ok(MediaLocation {
            server: self.server.clone(),
            share_type: match self.share_type {
                ShareTypeArg::Cifs => ShareType::Cifs,
                ShareTypeArg::Nfs => ShareType::Nfs,
            },
            share_name: self.share_name.clone(),
            image_name: self.image.clone(),
            user_name: self.share_user.clone(),
            password,
            domain: self.share_domain.clone(),
        })
    }
}

/// Runs one `vmedia bmc` command. Errors are one line each (the caller
/// prints them); exit status 0 on success.
pub async fn run(cmd: BmcCommand) -> anyhow::Result<ExitCode> {
    // Buffered so the future stays Send and output appears whole.
    let mut buf = Vec::new();
    let result = run_to(cmd, &mut buf).await;
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&buf)?;
    stdout.flush()?;
    result
}

async fn run_to(
    cmd: BmcCommand,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<ExitCode> {
    match cmd {
        BmcCommand::Info { conn, json } => {
            let client = conn.client()?;
            let report = client.report().await?;
            // Power state comes from Redfish, which some firmware lacks:
            // report it as unknown rather than failing the whole command.
            let power = match client.power_state().await {
                Ok(p) => p.to_string(),
                Err(e) => {
                    tracing::debug!(error = %e, "power state unavailable");
                    "unknown".to_owned()
                }
            };
            if json {
                let v = serde_json::json!({
                    "address": conn.address,
                    "model": report.model,
                    "firmware": report.firmware,
                    "virtual_floppy": report.has_virtual_fd,
                    "memory_mb": report.memory_mb,
                    "cpu_cores": report.cpu_cores,
                    "power_state": power,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "address:         {}", conn.address)?;
                writeln!(out, "model:           {}", report.model)?;
                writeln!(out, "firmware:        {}", report.firmware)?;
                writeln!(
                    out,
                    "virtual floppy:  {}",
                    if report.has_virtual_fd { "yes" } else { "no" }
                )?;
                writeln!(out, "memory:          {} MB", report.memory_mb)?;
                writeln!(out, "cpu cores:       {}", report.cpu_cores)?;
                writeln!(out, "power state:     {power}")?;
            }
        }
        BmcCommand::Power { action, via, conn } => {
            let client = conn.client_with(&via)?;
            if via.transport == TransportArg::Ipmi && action != PowerArg::Status {
                let control = match action {
                    PowerArg::On => ChassisControl::PowerUp,
                    PowerArg::Off => ChassisControl::PowerDown,
                    PowerArg::Reset => ChassisControl::HardReset,
                    PowerArg::Cycle => ChassisControl::PowerCycle,
                    PowerArg::SoftOff => ChassisControl::SoftOff,
                    PowerArg::Nmi => ChassisControl::PulseDiagnostic,
                    PowerArg::SoftReboot | PowerArg::Status => anyhow::bail!(
                        "IPMI has no graceful reboot: use --transport redfish or auto (SCCI, through the ServerView agent)"
                    ),
                };
                client.ipmi().chassis_control(control).await?;
                writeln!(out, "power {control:?} (IPMI): done")?;
                return Ok(ExitCode::SUCCESS);
            }
            let action = match action {
                PowerArg::Status => {
                    writeln!(out, "{}", client.power_state().await?)?;
                    return Ok(ExitCode::SUCCESS);
                }
                PowerArg::On => PowerAction::On,
                PowerArg::Off => PowerAction::Off,
                PowerArg::Reset => PowerAction::Reset,
                PowerArg::Cycle => PowerAction::Cycle,
                PowerArg::SoftOff => PowerAction::SoftOff,
                PowerArg::SoftReboot => PowerAction::SoftReboot,
                PowerArg::Nmi => PowerAction::Nmi,
            };
            client.power(action).await?;
            writeln!(out, "power {action:?}: done")?;
        }
        BmcCommand::Media(m) => {
            let (kind, attach, conn) = match &m {
                MediaCommand::AttachCd(a) => (MediaKind::Cd, Some(a), &a.conn),
                MediaCommand::AttachFd(a) => (MediaKind::Fd, Some(a), &a.conn),
                MediaCommand::AttachHd(a) => (MediaKind::Hd, Some(a), &a.conn),
                MediaCommand::DetachCd(d) => (MediaKind::Cd, None, &d.conn),
                MediaCommand::DetachFd(d) => (MediaKind::Fd, None, &d.conn),
                MediaCommand::DetachHd(d) => (MediaKind::Hd, None, &d.conn),
            };
            let client = conn.client()?;
            match attach {
                Some(a) => {
                    client.attach(kind, &a.location()?).await?;
                    writeln!(out, "{}: done", kind.insert_operation())?;
                }
                None => {
                    client.detach(kind).await?;
                    writeln!(out, "{}: done", kind.eject_operation())?;
                }
            }
        }
        BmcCommand::Boot {
            target,
            persistent,
            uefi: _,
            legacy,
            via,
            conn,
        } => {
            let client = conn.client_with(&via)?;
            let target = match target {
                BootArg::Cd => BootTarget::Cd,
                BootArg::Hdd => BootTarget::Hdd,
                BootArg::Pxe => BootTarget::Pxe,
            };
            let persistence = if persistent {
                BootPersistence::Continuous
            } else {
                BootPersistence::Once
            };
            let mode = if legacy {
                BootMode::Legacy
            } else {
                BootMode::Uefi
            };
            client.set_boot_override(target, persistence, mode).await?;
            writeln!(
                out,
                "boot override: {} {} {}",
                target.as_str(),
                persistence.as_str(),
                mode.as_str()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
