//! The `switchboard` binary.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Event-routing daemon for conversational AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the daemon on its embedded defaults.
    Serve,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Cmd::Serve => serve(),
    }
}

fn serve() -> anyhow::Result<()> {
    use std::sync::Arc;
    use switchboard::dead_letter::memory::MemoryDeadLetters;
    use switchboard::egress::ChannelSink;
    use switchboard::skill_runner::in_process::FnRunner;
    use switchboard::skill_runner::RunnerRegistry;
    use switchboard::{Engine, EngineConfig, EngineParts};

    actix_rt::System::new().block_on(async {
        let (sink, _egress) = ChannelSink::new(1024);
        let engine = Engine::start(
            EngineConfig::default(),
            EngineParts {
                runners: Arc::new(RunnerRegistry::new(Arc::new(FnRunner::completing()))),
                sink: Arc::new(sink),
                dead_letters: Arc::new(MemoryDeadLetters::new(10_000)),
                sessions: None,
            },
        );
        tracing::info!(
            integrations = engine.catalog().all().len(),
            "routing engine running in-process; the HTTP API is not built yet. Ctrl-C stops it."
        );
        tokio::signal::ctrl_c().await?;
        tracing::info!("stopping");
        Ok(())
    })
}
