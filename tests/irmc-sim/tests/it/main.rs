//! The simulator's integration tests, one module per area, linked into one test binary.

mod boot_support;
mod ipmitool;
mod support;

mod boot_external;
mod boot_failures;
mod boot_media;
mod boot_samba;
mod ipa_validation;
mod ramdisk_agent;
mod ramdisk_deploy;
mod ramdisk_scale;
mod scciclient;
mod sim_cli;
mod sim_http;
