//! `vmedia`: the operator's command-line tool.
//!
//! - `vmedia node|share|watch ...` talk gRPC to the coordinator: `--profile NAME` (or
//!   `VMEDIA_PROFILE`) picks a profile of the config file, `--coordinator ADDR` (or
//!   `VMEDIA_COORDINATOR`) and the `VMEDIA_*` credential variables override it
//!   (`coordinator_client::profile`). Every listing takes `--output table|json|yaml`
//!   (`output`).
//! - `vmedia bmc ...` talks to one iRMC directly (SCCI + Redfish), no coordinator needed.
//! - `vmedia media ...` builds boot media locally (parameter images, boot ISOs).
//! - `vmedia demo` runs the whole system on this machine and deploys a simulated fleet;
//!   `vmedia bench` measures it (throughput, CPU, memory, BMC requests, share bytes). Both
//!   start their processes through the `testkit` crate.
//! - `vmedia certs init` writes a development PKI and API tokens
//!   (`coordinator_client::pki`).
//! - `vmedia completions bash|zsh|fish|...` prints a shell completion script.
//!
//! Each subcommand lives in its own module; this file only parses and dispatches.

mod bench;
mod bmc;
mod certs;
mod client;
mod demo;
mod demo_mixed;
mod media;
mod media_configdrive;
mod node;
mod output;
mod share;
mod watch;

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vmedia",
    version,
    about = "Operate a fleet of iRMC servers provisioned through virtual media"
)]
struct Cli {
    /// Coordinator gRPC address or comma-separated replica list [default: the profile's,
    /// else http://127.0.0.1:50051]
    #[arg(long, global = true, env = "VMEDIA_COORDINATOR")]
    coordinator: Option<String>,

    /// Profile of the config file ($VMEDIA_CONFIG, else
    /// $XDG_CONFIG_HOME/vmedia/config.toml or ~/.config/vmedia/config.toml)
    #[arg(long, global = true, env = "VMEDIA_PROFILE")]
    profile: Option<String>,

    /// Log filter (tracing env-filter syntax); logs go to stderr
    #[arg(long, global = true, env = "VMEDIA_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll, inspect and provision nodes
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Share agents: list, drain, undrain
    #[command(subcommand)]
    Share(share::ShareCommand),
    /// Stream node events (state changes, progress, errors)
    Watch(watch::WatchArgs),
    /// Talk to one iRMC directly
    #[command(subcommand)]
    Bmc(bmc::BmcCommand),
    /// Build boot media locally
    #[command(subcommand)]
    Media(media::MediaCommand),
    /// Run the whole system on this machine and deploy a simulated fleet
    Demo(demo::DemoArgs),
    /// Measure throughput, CPU, memory, BMC requests and share bytes per node
    Bench(bench::BenchArgs),
    /// Development certificates and API tokens
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Print a shell completion script, e.g. `vmedia completions bash > /etc/bash_completion.d/vmedia`
    Completions { shell: clap_complete::Shell },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmedia: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Only the commands that talk to the coordinator read the profile.
    let target = || client::target(cli.profile.clone(), cli.coordinator.clone());
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(cmd) => node::run(&target()?, cmd).await,
            Command::Share(cmd) => share::run(&target()?, cmd).await,
            Command::Watch(args) => watch::run(&target()?, args).await,
            Command::Bmc(cmd) => bmc::run(cmd).await,
            Command::Media(cmd) => media::run(cmd).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Certs(cmd) => certs::run(cmd).await,
            Command::Completions { shell } => {
                // Into memory first: clap_complete panics on a failed write (a closed pipe).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "vmedia", &mut script);
                match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                    Ok(()) => Ok(std::process::ExitCode::SUCCESS),
                    // `| head`: the reader has what it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        Ok(std::process::ExitCode::SUCCESS)
                    }
                    Err(e) => Err(anyhow::anyhow!("writing the completion script: {e}")),
                }
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, with the chain of causes: operators grep for it.
            eprintln!("vmedia: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
