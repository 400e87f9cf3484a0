//! The `share-agent` integration tests, one binary (one link) for all of them.
//! `common` is the harness: a fake coordinator, the real `share-agent`
//! process and an in-process `irmc-sim`. Every test talks to the agent
//! process over loopback, so tests sharing this binary share no state.

mod common;
mod cost;
mod failures;
mod full_deploy;
mod hostile_ramdisk;
mod prepare_ramdisk;
mod ramdisk;
mod startup;
mod tls_link;
