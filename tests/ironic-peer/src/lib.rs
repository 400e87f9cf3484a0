//! `ironic-peer`: runs the real OpenStack Ironic 35.1 (the last release with the `irmc`
//! hardware type) against `irmc-sim --boot`, as the fidelity anchor of the simulator and
//! the peer of the side-by-side benchmark.
//!
//! # Layout
//! - `setup.sh`: installs Ironic 35.1.0 + python-scciclient 0.16.0 from PyPI into a cached
//!   venv, pinned by `constraints.txt`; prints `venv=DIR` last.
//! - `harness.py`: one run (deploy ISO, Ironic on a free loopback port with SQLite,
//!   `irmc-sim` with a share map onto Ironic's share root, enroll, manage, provide, deploy
//!   every node at once, check both sides); prints one JSON summary.
//! - `ironic.conf.in`: the configuration the harness renders.
//! - `run.sh`: `setup.sh` then `harness.py` with the workspace's `irmc-sim` binary.
//! - `bench.sh`: the side-by-side benchmark (Ironic vs. `vmedia demo`).
//! - this crate: [`run`] wraps `run.sh` for Rust tests (`tests/it/fidelity.rs`).
//!
//! # Invariants
//! - Everything runs on loopback; the simulated iRMCs get a random `127.X.Y.1` base so runs
//!   never collide, Ironic a free port. Every process the harness starts is stopped by
//!   process group when it ends, also on failure.
//! - Ironic itself is not modified and is configured only with documented options; what
//!   Ironic expects from an iRMC is answered by `irmc-sim`.
//! - This crate knows nothing about gRPC, the coordinator or the share agents.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// Errors of a harness run.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("irmc-sim binary {path} not found: build it with `cargo build -p irmc-sim`")]
    SimMissing { path: PathBuf },
    #[error(
        "irmc-sim binary {path} is older than {source_file}: rebuild it with `cargo build -p irmc-sim`"
    )]
    SimStale { path: PathBuf, source_file: PathBuf },
    #[error("cannot start {script}: {source}")]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ironic-peer run ({args}) failed with {status}; its log:\n{log}")]
    Failed {
        args: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("ironic-peer run ({args}) printed no JSON summary: {reason}; output: {output}")]
    BadSummary {
        args: String,
        reason: String,
        output: String,
    },
}

/// The directory holding the scripts (this crate's root).
pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `irmc-sim` binary next to the running test executable (`target/<profile>/`), which
/// the workspace build produces. Refuses a binary older than the simulator's sources so a
/// test never passes against stale code.
pub fn sim_binary() -> Result<PathBuf, PeerError> {
    let path = std::env::var_os("IRMC_SIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(default_sim_path);
    let built = match std::fs::metadata(&path).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return Err(PeerError::SimMissing { path }),
    };
    let src = peer_dir().join("../irmc-sim/src");
    if let Some((newest, file)) = newest_file(&src)
        && newest > built
    {
        return Err(PeerError::SimStale {
            path,
            source_file: file,
        });
    }
    Ok(path)
}

fn default_sim_path() -> PathBuf {
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/irmc-sim
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("irmc-sim")
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(p);
            } else if let Ok(t) = m.modified()
                && best.as_ref().is_none_or(|(b, _)| t > *b)
            {
                best = Some((t, p));
            }
        }
    }
    best
}

/// Run `run.sh` (venv set-up, then one harness run) with these harness arguments and
/// return its JSON summary. Progress and, on failure, the last lines of Ironic's and the
/// simulator's logs come back in the error.
pub fn run(sim: &Path, harness_args: &[&str]) -> Result<serde_json::Value, PeerError> {
    let script = peer_dir().join("run.sh");
    let args = harness_args.join(" ");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--sim")
        .arg(sim)
        .args(harness_args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PeerError::Spawn {
            script: script.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(PeerError::Failed {
            args,
            status: out.status,
            log: format!("{stderr}{stdout}"),
        });
    }
    let last = stdout.lines().rev().find(|l| l.starts_with('{'));
    match last.map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(PeerError::BadSummary {
            args,
            reason: e.to_string(),
            output: stdout,
        }),
        None => Err(PeerError::BadSummary {
            args,
            reason: "no line starting with '{'".into(),
            output: format!("{stderr}{stdout}"),
        }),
    }
}
