//! The test harness: a whole system on this machine, for `vmedia demo` and `vmedia
//! bench`, the end-to-end scenarios and the store's backend tests.
//!
//! A fleet is one coordinator (SQLite in a work directory, or several replicas on one
//! throwaway PostgreSQL), M share agents whose shares are local directories, one
//! `irmc-sim` process simulating N iRMCs on loopback addresses, and a small HTTP server
//! holding the deploy ISO and the instance image. Every part is a real process talking
//! over real sockets.
//!
//! | module | job |
//! | --- | --- |
//! | [`spec`] | what shapes a fleet, and the naming rules (share ids, addresses) |
//! | [`process`] | child processes with logs; CPU and RSS from `/proc` |
//! | [`postgres`] | a throwaway PostgreSQL cluster |
//! | [`files`] | the demo's media, its file server, secret files, share usage |
//! | [`observe`] | listings and waits through the public API; the simulator's counters |
//! | [`fleet`] | a running fleet: start, kill, restart, enroll, drive |
//! | [`agentlink`] | the AgentLink protocol with one side faked: coordinator or agent |
//!
//! Security is on by default, as in production: a development PKI from
//! [`coordinator_client::pki::init_dev_pki`] (the code behind `vmedia certs init`) gives
//! the coordinator its TLS certificate, each agent its client certificate (mTLS), and the
//! fleet an admin token. Access is passed explicitly: [`Fleet::access`] holds the CA and
//! token, and the free functions of [`observe`] take it as an argument.
//!
//! Addresses: the simulated iRMCs live at `sim_base`, `sim_base + 1`, ... on port 443 with
//! a certificate signed by the simulator's own CA, which the nodes' `irmc_verify_ca`
//! points at (TLS is verified, as in production). Share `k` (1-based) is known to the
//! iRMCs as server `127.0.100.k`, share name `share`; the simulator maps that to the
//! agent's share directory and checks the share credentials like a CIFS server would.
//! Each simulated node's NIC MAC is `52:54:` followed by the four octets of its iRMC
//! address (the simulator's rule), which is how the deploy ramdisk's lookup finds it.
//!
//! Nothing in the product crates depends on this crate; only the CLI's `demo` and
//! `bench`, and tests.

pub mod agentlink;
pub mod files;
pub mod fleet;
pub mod observe;
pub mod postgres;
pub mod process;
pub mod spec;

pub use fleet::Fleet;
pub use observe::{CpuSeconds, NodeSummary, is_failed, is_settled, list_all, wait_until};
pub use postgres::Postgres;
pub use process::{Proc, free_port, spawn_logged};
pub use spec::{FleetSpec, default_bin_dir, random_sim_base, share_dir, share_id};
