//! `share-agent --config FILE`: checks the share, prints the effective
//! configuration (secrets redacted) and runs until SIGINT/SIGTERM.
//!
//! A refused start prints ONE line naming the option and exits non-zero
//! (2 = bad configuration, 3 = share check failed, 1 = runtime failure).

/// Many small, short-lived allocations per request (headers, XML, protobuf): mimalloc's
/// thread-local free lists cost a fraction of glibc malloc's consolidation work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use share_agent::{Cli, Config, checks};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("share-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let root = match checks::check_share_root(&cfg.share) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("share-agent: {e}");
            return ExitCode::from(3);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in checks::export_warnings(&cfg.share, &root) {
        tracing::warn!("{w}");
    }
    tracing::info!(config = %cfg.redacted(), "effective configuration");
    if cli.check {
        println!("{}", cfg.redacted());
        return ExitCode::SUCCESS;
    }

    let mut builder = match cfg.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("share-agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            sd.cancel();
        });
        match share_agent::run(cfg, root, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("share-agent: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
