//! A throwaway PostgreSQL cluster for HA fleets and the store's backend tests.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::process::free_port;

/// A throwaway PostgreSQL cluster on a loopback port (initdb + pg_ctl, fsync off), for
/// HA fleets and tests. Stopped (immediate mode) on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Postgres {
    /// The directory holding `initdb`/`pg_ctl`: `$PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`. `None` when PostgreSQL is not installed.
    pub fn bin_dir() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("PG_BIN") {
            return Some(PathBuf::from(p));
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        found.sort();
        found.pop()
    }

    /// Initialises and starts a cluster in `dir` (created; must not hold one already).
    pub fn start(dir: &Path) -> Result<Postgres> {
        let bin = Self::bin_dir().ok_or_else(|| anyhow!("PostgreSQL is not installed"))?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let root = is_root();
        if root {
            // initdb and postgres refuse to run as root: hand the directory over.
            let st = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .context("chown for PostgreSQL")?;
            if !st.success() {
                bail!("chown of {} for PostgreSQL failed", dir.display());
            }
        }
        let run = |tool: &str, args: &[&str]| -> Result<std::process::Output> {
            let exe = bin.join(tool);
            let mut cmd = if root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            } else {
                std::process::Command::new(&exe)
            };
            cmd.args(args)
                .output()
                .with_context(|| format!("running {tool}"))
        };
        let data = dir.join("data");
        let data_s = data.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let out = run(
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log = dir.join("postgres.log");
        let log_s = log.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let mut last = String::new();
        // A free port may be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            let port = free_port()?.port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
                dir.display()
            );
            let out = run(
                "pg_ctl",
                &["-D", data_s, "-o", &opts, "-l", log_s, "-w", "start"],
            )?;
            if out.status.success() {
                return Ok(Postgres { bin, data, port });
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        bail!("could not start PostgreSQL: {last}")
    }

    /// URL of database `db` (user postgres, trust auth on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

/// Whether this process runs as root (effective uid from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
