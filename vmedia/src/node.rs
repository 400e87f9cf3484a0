//! `vmedia node`: placeholder until the coordinator API lands.
#[derive(clap::Subcommand)]
pub enum NodeCommand {}
pub async fn run(_coordinator: &str, cmd: NodeCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
