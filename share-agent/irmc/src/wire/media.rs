//! The virtual drives' ConfigSpace items (the OE table in the crate docs) and
//! the SCCI writes that point a drive at an image on a share.

use crate::config::Secret;

use super::scci::{Opcode, ScciCommand, ScciData};

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

impl ScciCommand {
    /// `ConnectRemote{Cd,Fd,Hd}Image` with DATA 1 (connect) or 0 (disconnect).
    pub fn connect(kind: MediaKind, connect: bool) -> Self {
        Self {
            opcode: kind.connect_opcode(),
            oe: 0,
            oi: 0,
            data: ScciData::Int(i64::from(connect)),
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
