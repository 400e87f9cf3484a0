//! `vmedia watch`: placeholder until the coordinator API lands.
#[derive(clap::Args)]
pub struct WatchArgs {}
pub async fn run(_coordinator: &str, _args: WatchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("vmedia watch is not available yet")
}
