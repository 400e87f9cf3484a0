//! Boot media for a share agent: everything that ends up as bytes on an NFS/CIFS share
//! for an iRMC to read.
//!
//! Layout:
//! - [`params`]: the per-node parameter image (FAT, label `ir-vfd-dev`, `parameters.txt`),
//!   as a 1440 KiB floppy or a small hard-disk image; pure Rust, deterministic bytes,
//!   built as a [`SparseImage`] from a per-form template formatted once per process.
//! - [`sparse`]: [`SparseImage`], a fixed-size image kept as copy-on-write 4 KiB blocks
//!   (absent blocks are zeros), usable as a `Read + Write + Seek` device.
//! - [`fsio`]: atomic, sparse, space-checked file writes and `statvfs` free space.
//! - [`iso`]: El Torito boot ISOs (isolinux for BIOS, GRUB `BOOTX64.EFI` in an EFI system
//!   partition image for UEFI), built in-process, and their content-addressed key.
//! - [`configdrive`]: `instance_info.configdrive` in its three forms (URL, gzip+base64
//!   ISO, JSON) and the OpenStack `config-2` ISO built from the JSON form.
//! - [`netboot`]: the boot ISO of a netbooted partition image (`root=UUID=...`).
//! - [`store`]: content-addressed, reference-counted boot ISOs on the share, with GC.
//! - [`image`]: image references (share file, URL, Glance) and checksums.
//! - [`cache`]: the content-addressed image cache on the share (one download per image,
//!   shared by all nodes; size limit + TTL; images in use are never deleted).
//!
//! Tests (modules of the one `tests/it` binary): `fat_mtools.rs` (mtools, fsck.fat),
//! `iso.rs` (xorriso oracle, the ISO store), `cache.rs` (HTTP and a fake Glance on
//! loopback), `qemu_boot.rs` (the ISO boots under SeaBIOS and OVMF with the parameter
//! image attached; the kernel is fetched by `tests/qemu-kernel.sh`). `benches/media.rs`
//! prints the cost per node.
//!
//! Cost per node (see the bench): a parameter image is ~3 us of CPU to build (never
//! expanded to its 1.4/4 MiB), a few tens of microseconds more to write (only its stored
//! blocks, no fsync), and 12-16 KiB allocated on the share; boot ISOs and cached images
//! are shared by every node that needs the same bytes, so an extra node adds only its
//! parameter image.
//!
//! Invariants:
//! - This crate knows nothing about gRPC, the coordinator or the iRMC wire format.
//! - Every file that lands on the share is written to a temp file in the same directory
//!   and renamed: a reader (an iRMC) never sees a half-written image. Files that are
//!   costly to rebuild (ISOs, cached images) are fsynced first; per-node parameter images,
//!   rebuilt by every prepare job, are not (see [`write_atomic_sparse`]).
//! - Free space is checked before every write; a full disk is an error, never a panic.
//! - Secrets (agent tokens inside parameters, Glance tokens) never appear in Debug output
//!   or error text.

pub mod cache;
pub mod configdrive;
pub mod error;
pub mod fsio;
pub mod image;
pub mod iso;
pub mod netboot;
pub mod params;
pub mod sparse;
pub mod store;

pub use cache::{CacheConfig, CacheStats, CachedImage, GcStats, GlanceConfig, ImageCache, Secret};
pub use configdrive::{ConfigDriveData, ConfigDriveSource, ResolvedConfigDrive};
pub use error::MediaError;
pub use fsio::{
    Durability, WriteStats, free_bytes, write_atomic, write_atomic_sparse, write_atomic_sparse_with,
};
pub use image::{Checksum, ChecksumAlgo, ImageRef};
pub use iso::{
    BootIsoSpec, DeployIsoSpec, IsoStats, Loaders, boot_iso_key, build_boot_iso, build_deploy_iso,
    deploy_cmdline,
};
pub use netboot::{NetbootSpec, netboot_cmdline};
pub use params::{
    FLOPPY_BYTES, HARD_DISK_BYTES, ImageForm, LABEL, PARAMS_FILE, Parameters, parameter_image,
    parameter_image_dense, parameter_image_sparse,
};
pub use sparse::SparseImage;
pub use store::{BootIsoStore, IsoHandle, StoreGcStats};
