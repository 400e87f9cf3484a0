//! `vmedia share`: placeholder until the coordinator API lands.
#[derive(clap::Subcommand)]
pub enum ShareCommand {}
pub async fn run(_coordinator: &str, cmd: ShareCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
