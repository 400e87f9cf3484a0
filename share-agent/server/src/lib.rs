//! The share agent: one process per NFS/CIFS share server. It builds boot
//! media on its share, drives the iRMCs of the nodes placed on it, serves
//! images to deploy ramdisks over HTTP and relays their lookup/heartbeat to
//! the coordinator.
//!
//! # Layout
//! - [`config`]: the TOML/flag/env configuration (Ironic `[irmc]` names).
//! - [`checks`]: start-up checks on the share root (refusals and warnings).
//! - [`agent`]: [`run`], which builds everything below and runs it until shutdown.
//! - [`link`]: the coordinator link (`AgentLink.Session`, reconnects, mTLS, follows
//!   the leader among several coordinator replicas).
//! - [`http`]: images for ramdisks (Range), Ironic's ramdisk endpoints.
//! - [`jobs`]: the jobs themselves (prepare-ramdisk, write-image,
//!   prepare-instance, ...) and the per-job context they run in.
//! - [`state`]: the shared state (caches, BMC clients, node records) jobs get.
//! - [`registry`]: job bookkeeping (idempotency, per-node serialisation) and
//!   the sink updates leave by.
//! - [`bus`]: what jobs and the HTTP side hand each other (published images,
//!   heartbeat wake-ups).
//! - [`metrics`]: Prometheus metrics and their listener (`metrics_listen`).
//! - [`ramdisk`]: client of the ramdisk's command API.
//! - [`filestream`]: chunked file bodies for image downloads.
//! - [`error`]: the error type. Secrets are the product-wide `secret::Secret`.
//!
//! # Layering (each module uses only those below it)
//! `agent` (wires everything) > `http` > `link` > `jobs` > `state` > `bus`,
//! `registry`, `ramdisk`, `checks`, `filestream` > `config` > `error`.
//! `http` sees the coordinator only through [`link::Coordinators`] and the jobs
//! only through [`bus`]; nothing below `agent` names it. `main.rs` calls
//! [`checks`] and [`run`].
//!
//! # Invariants
//! - The share layout: `nodes/<uuid>/params.img` per node (deleted by
//!   prepare-instance and clean-up), content-addressed caches shared by all
//!   nodes (`cache/`, `boot-iso/`, managed by `boot-media`). Nothing per node
//!   lives outside `nodes/<uuid>/`.
//! - The HTTP side serves only files a running job published.
//! - A job id runs at most once per process; one job at a time per node;
//!   a bounded number of BMC operations at once per agent.
//! - Secrets (share password, BMC passwords, agent tokens, Glance token)
//!   never appear in logs, errors or the printed config.
//! - A failing BMC, ramdisk or disk fails that node's job, never the process.
//!
//! Only this crate and the coordinator see the gRPC types; `irmc` and
//! `boot-media` know nothing about gRPC.

pub mod agent;
pub mod bus;
pub mod checks;
pub mod config;
pub mod error;
pub mod filestream;
pub mod http;
pub mod jobs;
pub mod link;
pub mod metrics;
pub mod ramdisk;
pub mod registry;
pub mod serve;
pub mod state;

pub use agent::run;
pub use config::{Cli, Config};
pub use error::AgentError;
