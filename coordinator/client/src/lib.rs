//! The client side of the coordinator's public API, shared by the `vmedia` CLI and the
//! test harness (`testkit`):
//!
//! - [`conn`]: reaching the coordinator: one address or a replica list, following the
//!   leader, TLS verified against a CA file, the API token on every call.
//! - [`profile`]: where those settings come from for an operator: named profiles in a
//!   TOML file, overridden by flags and `VMEDIA_*` variables.
//! - [`pki`]: the development PKI behind `vmedia certs init`: a CA, the coordinator's
//!   server certificate, one client certificate per share agent, API tokens and the
//!   at-rest key.
//!
//! It knows nothing about the coordinator's internals: only the generated gRPC clients of
//! `vmedia-proto` and PEM files.

pub mod conn;
pub mod pki;
pub mod profile;
