//! The integration tests of the coordinator, linked into one test binary. Every test
//! starts its own `coordinator` process(es) on loopback (`common.rs`), so tests sharing
//! this process share nothing else.

mod common;

mod agents_and_watch;
mod api;
mod lifecycle;
mod limits;
mod python_client;
mod scale;
mod startup_security;
