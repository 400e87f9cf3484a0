//! Boot media for a share agent: everything that ends up as bytes on an NFS/CIFS share
//! for an iRMC to read.
//!
//! Layout:
//! - [`params`]: the per-node parameter image (FAT, label `ir-vfd-dev`, `parameters.txt`),
//!   as a 1440 KiB floppy or a small hard-disk image; pure Rust, deterministic bytes.
//! - [`fsio`]: atomic, sparse, space-checked file writes and `statvfs` free space.
//! - [`iso`]: El Torito boot ISOs (isolinux for BIOS, GRUB `BOOTX64.EFI` in an EFI system
//!   partition image for UEFI), built in-process, and their content-addressed key.
//! - [`store`]: content-addressed, reference-counted boot ISOs on the share, with GC.
//! - [`image`]: image references (share file, URL, Glance) and checksums.
//! - [`cache`]: the content-addressed image cache on the share (one download per image,
//!   shared by all nodes; size limit + TTL; images in use are never deleted).
//!
//! Tests: `tests/fat_mtools.rs` (mtools, fsck.fat), `tests/iso.rs` (xorriso oracle, the
//! ISO store), `tests/cache.rs` (HTTP and a fake Glance on loopback), `tests/qemu_boot.rs`
//! (the ISO boots under SeaBIOS and OVMF with the parameter image attached; the kernel is
//! fetched by `tests/qemu-kernel.sh`). `benches/media.rs` prints the cost per node.
//!
//! Cost per node (see the bench): a parameter image is ~50-200 us of CPU to build and
//! 12-16 KiB allocated on the share (written sparse); boot ISOs and cached images are
//! shared by every node that needs the same bytes, so an extra node adds only its
//! parameter image.
//!
//! Invariants:
//! - This crate knows nothing about gRPC, the coordinator or the iRMC wire format.
//! - Every file that lands on the share is written to a temp file in the same directory,
//!   fsynced and renamed: a reader (an iRMC) never sees a half-written image.
//! - Free space is checked before every write; a full disk is an error, never a panic.
//! - Secrets (agent tokens inside parameters, Glance tokens) never appear in Debug output
//!   or error text.

pub mod cache;
pub mod error;
pub mod fsio;
pub mod image;
pub mod iso;
pub mod params;
pub mod store;

pub use cache::{CacheConfig, CacheStats, CachedImage, GcStats, GlanceConfig, ImageCache, Secret};
pub use error::MediaError;
pub use fsio::{WriteStats, free_bytes, write_atomic};
pub use image::{Checksum, ChecksumAlgo, ImageRef};
pub use iso::{
    BootIsoSpec, DeployIsoSpec, IsoStats, Loaders, boot_iso_key, build_boot_iso, build_deploy_iso,
    deploy_cmdline,
};
pub use params::{
    FLOPPY_BYTES, HARD_DISK_BYTES, ImageForm, LABEL, PARAMS_FILE, Parameters, parameter_image,
};
pub use store::{BootIsoStore, IsoHandle, StoreGcStats};
