//! `vmedia media`: placeholder until the media crate lands.
#[derive(clap::Subcommand)]
pub enum MediaCommand {}
pub async fn run(cmd: MediaCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
