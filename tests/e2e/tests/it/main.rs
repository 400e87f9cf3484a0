//! The end-to-end scenarios, one module each, linked into one test binary (links dominate
//! test time on two cores). Each scenario starts a whole system with `testkit::Fleet`.

mod adversary;
mod agent_loss;
mod agent_token;
mod bmc_info;
mod bmc_validation;
mod boot_failures;
mod cli_profile;
mod coordinator_restart;
mod dashboard;
mod demo_signals;
mod ha_failover;
mod ironic_image_info;
mod metrics;
mod node_import_partition;
mod power_inspect;
mod security;
mod single_node;
mod stock_ipa;
mod watch_failover;
