//! Library side of the `vmedia` CLI: the pieces that other programs and the end-to-end
//! tests reuse.
//!
//! - [`certs`]: `vmedia certs init`, the development CA, certificates and API tokens.
//! - [`conn`]: reaching the coordinator (replica list, leader, TLS, API token).
//! - [`fleet`]: start a whole system (coordinator, share agents, simulated iRMCs) as real
//!   processes on this machine, and take parts of it down again.

pub mod certs;
pub mod conn;
pub mod fleet;
