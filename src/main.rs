//! The `switchboard` binary: `serve` runs the daemon, `check` validates a config and its flows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::config::{Config, LogFormat};
use switchboard::daemon::{boot, flow_files, Daemon};

#[derive(Parser)]
#[command(version, about = "Event-routing daemon for conversational AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the daemon (embedded transport, HTTP API, SQLite store).
    Serve {
        /// The config file; `config/switchboard.toml` when it exists, else the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validates a config file and the flow files it names; exits non-zero naming the key.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            init_logs(&config)?;
            serve(config)
        }
        Cmd::Check { config } => check(config),
    }
}

fn init_logs(config: &Config) -> anyhow::Result<()> {
    let filter = config.log.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref())?;
    let account = switchboard::domain::Idn::known(switchboard::domain::DEFAULT_ACCOUNT);
    let flows = flow_files::load_dir(&account, &config.flows.dir)?;
    println!(
        "config ok; {} flow(s) in {}",
        flows.len(),
        config.flows.dir.display()
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    actix_rt::System::new().block_on(async move {
        let daemon = boot::start(config, Some(prometheus)).await?;
        let (server, addrs) = switchboard::http::bind(daemon.clone())
            .with_context(|| format!("binding {}", daemon.config.http.listen))?;
        for a in &addrs {
            tracing::info!(address = %a, "listening");
        }
        let handle = server.handle();
        let server = actix_rt::spawn(server);
        wait_for_signals(&daemon).await?;
        shutdown(&daemon, handle).await;
        let _ = server.await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Returns on SIGTERM or Ctrl-C; SIGHUP reloads the flow files.
async fn wait_for_signals(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = hup.recv() => match daemon.reload_flow_files().await {
                Ok(n) => tracing::info!(flows = n, "flow files reloaded"),
                Err(e) => tracing::error!(error = %e, "flow files refused; the flows in force stay"),
            },
        }
    }
}

/// Stops admitting, lets running invocations finish up to the bound, flushes the store.
async fn shutdown(daemon: &Arc<Daemon>, server: actix_web::dev::ServerHandle) {
    tracing::info!("shutting down");
    daemon.drain();
    let bound = daemon.config.http.shutdown_timeout();
    let deadline = tokio::time::Instant::now() + bound;
    server.stop(true).await;
    while daemon.engine.ingress().inflight() > 0 || !daemon.pending.is_empty() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                inflight = daemon.engine.ingress().inflight(),
                "shutdown bound reached; unfinished events stay in the inbox"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(e) = daemon.store.flush().await {
        tracing::error!(error = %e, "flushing the store");
    }
}
