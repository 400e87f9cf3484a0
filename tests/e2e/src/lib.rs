//! Multi-process end-to-end scenarios, one module per scenario under `tests/it/`.
//!
//! Each scenario starts a whole system with [`testkit::Fleet`] (coordinator, share
//! agents and `irmc-sim` as real processes on loopback addresses), drives it through the
//! public gRPC API and checks what the simulated servers and the shares saw. The service
//! binaries must be built first (`cargo build --workspace` does it; `cargo test` and
//! `cargo nextest` build them as part of the workspace).
//!
//! This library holds only what every scenario needs: a fleet in a fresh directory.

use std::time::Duration;

use testkit::{Fleet, FleetSpec, default_bin_dir};

/// A fleet spec in a fresh temporary directory (kept on failure for the logs: the
/// directory is leaked on purpose when `E2E_KEEP` is set).
pub fn spec(nodes: usize, shares: usize) -> anyhow::Result<(FleetSpec, tempfile::TempDir)> {
    let dir = tempfile::Builder::new().prefix("vmedia-e2e-").tempdir()?;
    let mut spec = FleetSpec::new(nodes, shares, dir.path().to_path_buf(), default_bin_dir()?);
    spec.agent_capacity = 16;
    spec.image_bytes = 1 << 20;
    spec.sim_args = vec!["--boot-delay".into(), "100ms".into()];
    Ok((spec, dir))
}

/// Starts the fleet, with a readable error naming the log directory on failure.
pub async fn start(spec: FleetSpec) -> anyhow::Result<Fleet> {
    let logs = spec.work_dir.join("logs");
    Fleet::start(spec)
        .await
        .map_err(|e| e.context(format!("starting the fleet (logs in {})", logs.display())))
}

/// Enough time for a small fleet to deploy on a loaded 2-core CI machine.
pub const SETTLE: Duration = Duration::from_secs(240);
