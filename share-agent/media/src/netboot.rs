//! The boot ISO of a netbooted partition image: the image's own kernel and ramdisk, with
//! `root=UUID=<root partition UUID>` ahead of the operator's kernel parameters, as
//! Ironic's `create_boot_iso` writes the command line. The root UUID is the one the
//! deploy ramdisk reported after writing the image (`get_partition_uuids`).
//!
//! The ISO is content-addressed like every boot ISO ([`crate::boot_iso_key`] over
//! kernel, ramdisk and command line): nodes with the same image and the same root UUID
//! (an image whose file system UUID is fixed) share one file on the share.

use std::path::PathBuf;

use crate::error::MediaError;
use crate::iso::{BootIsoSpec, Loaders};

/// Volume id of instance boot ISOs.
pub const VOLUME_ID: &str = "VMEDIA_INSTANCE";

/// What a netboot ISO is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootSpec {
    /// The partition image's kernel (`instance_info.kernel`, fetched).
    pub kernel: PathBuf,
    /// Its ramdisk (`instance_info.ramdisk`, fetched).
    pub ramdisk: PathBuf,
    /// The root file system's UUID, as the deploy ramdisk reported it.
    pub root_uuid: String,
    /// `kernel_append_params`, appended verbatim.
    pub kernel_append_params: String,
    pub bios: bool,
    pub uefi: bool,
    pub loaders: Loaders,
}

/// `root=UUID=<uuid> <append>`. The UUID must look like one (hex digits and dashes,
/// as file system UUIDs are printed, at most 64 characters): it comes from the ramdisk.
pub fn netboot_cmdline(root_uuid: &str, append: &str) -> Result<String, MediaError> {
    let u = root_uuid.trim();
    if u.is_empty() || u.len() > 64 || !u.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(MediaError::InvalidParameter {
            key: "root uuid".into(),
            reason: format!(
                "{u:?} is not a file system UUID (hex digits and dashes, 1-64 characters)"
            ),
        });
    }
    let mut s = format!("root=UUID={u}");
    let append = append.trim();
    if !append.is_empty() {
        s.push(' ');
        s.push_str(append);
    }
    Ok(s)
}

impl NetbootSpec {
    /// The equivalent [`BootIsoSpec`] (volume id [`VOLUME_ID`]).
    pub fn to_boot_spec(&self) -> Result<BootIsoSpec, MediaError> {
        Ok(BootIsoSpec {
            kernel: self.kernel.clone(),
            initrd: self.ramdisk.clone(),
            cmdline: netboot_cmdline(&self.root_uuid, &self.kernel_append_params)?,
            bios: self.bios,
            uefi: self.uefi,
            loaders: self.loaders.clone(),
            volume_id: VOLUME_ID.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_as_ironic_writes_it() {
        assert_eq!(
            netboot_cmdline("0b6a1c52-8f3e-4a55-9d7e-1a2b3c4d5e6f", " console=ttyS0 ").unwrap(),
            "root=UUID=0b6a1c52-8f3e-4a55-9d7e-1a2b3c4d5e6f console=ttyS0"
        );
        assert_eq!(
            netboot_cmdline("1234-ABCD", "").unwrap(),
            "root=UUID=1234-ABCD"
        );
        for bad in ["", "x y", "abc\ninit=/bin/sh", "g123"] {
            let e = netboot_cmdline(bad, "").unwrap_err().to_string();
            assert!(e.contains("root uuid"), "{e}");
        }
    }
}
