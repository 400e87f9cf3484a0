//! AgentLink (`proto/vmedia/v1/agent.proto`), the coordinator <-> share agent protocol,
//! with one side faked so the other can be tested alone over a real socket:
//!
//! - [`fake_coordinator`]: plays the coordinator for the `share-agent` tests.
//! - [`fake_agent`]: plays a share agent (and the ramdisks of its nodes) for the
//!   `coordinator` tests.

pub mod fake_agent;
pub mod fake_coordinator;
