//! The `/iRMC_Settings.pre` dump: a `<CMDSEQ>` of ConfigSpace items with
//! their values, read back before an eject.

use std::collections::BTreeMap;
use std::fmt;

use super::WireError;
use super::media::{MediaKind, ShareType};
use super::scci::parse_cmdseq;

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
