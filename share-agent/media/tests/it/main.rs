//! The `boot-media` integration tests, one binary (one link) for all of them.
//! `common` finds system tools and loaders; the shell scripts the QEMU test runs
//! stay in `tests/`.

mod cache;
mod cache_hostile;
mod common;
mod configdrive;
mod fat_mtools;
mod iso;
mod qemu_boot;
