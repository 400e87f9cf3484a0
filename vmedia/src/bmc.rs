//! `vmedia bmc`: placeholder until the iRMC client lands.
#[derive(clap::Subcommand)]
pub enum BmcCommand {}
pub async fn run(cmd: BmcCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
