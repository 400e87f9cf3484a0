//! `vmedia certs init`: writes a development PKI and API tokens with
//! [`coordinator_client::pki::init_dev_pki`] and prints where each file went.

use std::path::PathBuf;

use anyhow::Result;
use coordinator_client::pki::{PkiSpec, init_dev_pki};

/// `vmedia certs ...`
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, a coordinator certificate, one client certificate per
    /// share agent, and admin/reader API tokens
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing)
    #[arg(long, default_value = "vmedia-pki")]
    pub dir: PathBuf,
    /// Number of share agents; their ids are share-1 ... share-N
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// Explicit share agent ids (instead of share-1 ... share-N)
    #[arg(long = "agent-id")]
    pub agent_ids: Vec<String>,
    /// Extra DNS names or IP addresses of the coordinator (localhost and 127.0.0.1 are
    /// always included)
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Replace files that already exist
    #[arg(long)]
    pub force: bool,
}

/// Runs `vmedia certs ...`.
pub async fn run(cmd: CertsCommand) -> Result<std::process::ExitCode> {
    match cmd {
        CertsCommand::Init(a) => {
            let agent_ids = if a.agent_ids.is_empty() {
                (1..=a.agents).map(|k| format!("share-{k}")).collect()
            } else {
                a.agent_ids
            };
            let pki = init_dev_pki(&PkiSpec {
                dir: a.dir,
                agent_ids,
                hosts: a.hosts,
                force: a.force,
            })?;
            println!("CA:               {}", pki.ca_cert.display());
            println!(
                "coordinator:      {} (key {})",
                pki.coordinator_cert.display(),
                pki.coordinator_key.display()
            );
            for (id, (c, k)) in &pki.agents {
                println!("agent {id:<10} {} (key {})", c.display(), k.display());
            }
            println!("API token file:   {}", pki.tokens.display());
            println!(
                "client tokens:    {} (admin), {} (reader)",
                pki.admin_token.display(),
                pki.reader_token.display()
            );
            println!("at-rest key:      {}", pki.secret_key.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
