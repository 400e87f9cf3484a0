//! `vmedia demo`: runs the whole system on this machine (placeholder until the parts land).
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of simulated nodes
    #[arg(long, default_value_t = 100)]
    pub nodes: u32,
    /// Number of share agents
    #[arg(long, default_value_t = 4)]
    pub shares: u32,
    /// Print one JSON object instead of the human summary
    #[arg(long)]
    pub json: bool,
}
pub async fn run(_args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("the demo is not available yet: the coordinator, share agent and simulator are still being built")
}
