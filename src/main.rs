//! The `switchboard` binary: `serve` runs the daemon, `check` validates a config and its flows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::boot;
use switchboard::config::{Config, LogFormat, TransportKind};
use switchboard::daemon::{flow_files, Daemon};

/// mimalloc: under the daemon's many small, cross-thread allocations glibc's malloc took a
/// third of the CPU time of the NATS path (see ARCHITECTURE.md, "Dependencies").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The config file to check; `config/switchboard.toml` when it exists, else the
        /// defaults. Environment overrides (`SWITCHBOARD_<SECTION>__<KEY>`) apply as for serve.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Publishes one event to a running daemon's NATS transport, for trying it by hand.
    PublishEvent(PublishEvent),
    /// Rekeys the sealed secrets: seals every secret the store keeps sealed (secret settings,
    /// webhook runners' signing secrets, the persona key, natives' own such as credentials)
    /// under a new key. The key file gets
    /// the new key first (the old ones stay after it, opening what they sealed, unless
    /// --drop-old), then every sealed value is re-sealed. Run it with the daemon stopped;
    /// re-running it is safe. API tokens are not sealed but hashed: `token revoke` ends one.
    Rekey {
        /// The config file, as for serve.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Once everything is re-sealed, remove the old keys from the key file.
        #[arg(long)]
        drop_old: bool,
    },
    /// API tokens in the store the config names (with the daemon running or not; a running
    /// daemon sees a change within `auth.cache_ttl_ms`).
    Token {
        /// The config file, as for serve.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Creates a token and prints its text (shown this once; only a hash is kept).
    Create {
        /// The account it acts for (created if missing).
        #[arg(long, default_value = "default")]
        account: String,
        /// A name to recognise it by in `token list`.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: admin, account:admin, read, events:write, commands:write,
        /// results:write, flows:write, connectors:write, credentials:write, metrics:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// When it stops working (RFC 3339); never when absent.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Lists tokens (never their text).
    List {
        #[arg(long)]
        account: Option<String>,
    },
    /// Revokes a token by its id (the 12 characters after `sbt_`).
    Revoke { id: String },
}

#[derive(clap::Args)]
struct PublishEvent {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Subject prefix (`transport.nats.prefix`).
    #[arg(long, default_value = "sb")]
    prefix: String,
    #[arg(long, default_value = "default")]
    account: String,
    #[arg(long)]
    integration: String,
    #[arg(long)]
    connector: String,
    #[arg(long)]
    event: String,
    /// The actor's external id.
    #[arg(long)]
    actor: String,
    /// An argument, `name=value`; repeat for more.
    #[arg(long = "arg", value_parser = parse_arg)]
    args: Vec<(String, String)>,
    /// Also the `Nats-Msg-Id`: a repeat within the stream's window is dropped.
    #[arg(long)]
    external_event_id: Option<String>,
    /// Publish JSON instead of MessagePack.
    #[arg(long)]
    json: bool,
}

fn parse_arg(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected name=value"))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Serve { config } => {
            let config = Config::load(config.as_deref(), &boot::sections())?;
            init_logs(&config)?;
            serve(config)
        }
        Cmd::Check { config } => check(config),
        Cmd::PublishEvent(p) => publish_event(p),
        Cmd::Token { config, command } => token(config, command),
        Cmd::Rekey { config, drop_old } => rekey(config, drop_old),
    }
}

fn init_logs(config: &Config) -> anyhow::Result<()> {
    let filter = config.log.filter()?;
    // Colours only for a person at a terminal: a file, a pipe or a journal gets plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn publish_event(p: PublishEvent) -> anyhow::Result<()> {
    use switchboard::transport::client::Client;
    use switchboard::wire::envelope::{
        ActorWire, ArgumentWire, ArgumentsWire, Encoding, EventEnvelope, VERSION,
    };
    let envelope = EventEnvelope {
        v: VERSION,
        id: None,
        external_event_id: p.external_event_id.clone(),
        account: p.account,
        integration_idn: p.integration,
        connector_idn: p.connector,
        event_idn: p.event,
        actor: Some(ActorWire {
            external_id: p.actor.into(),
            name: None,
        }),
        arguments: ArgumentsWire::List(
            p.args
                .into_iter()
                .map(|(name, value)| ArgumentWire {
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
        ),
        uninterruptible: false,
        command_act_id: None,
        occurred_at: Some(chrono::Utc::now()),
        persona_id: None,
    };
    let encoding = if p.json {
        Encoding::Json
    } else {
        Encoding::MessagePack
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let client = Client::connect(&p.url, &p.prefix, encoding).await?;
            let seq = client
                .publish_event(&envelope, p.external_event_id.as_deref())
                .await?;
            println!("published: stream sequence {seq}");
            anyhow::Ok(())
        })
}

fn rekey(path: Option<PathBuf>, drop_old: bool) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref(), &boot::sections())?;
    let store =
        switchboard::store::Store::open(&config.store.path, 64, config.store.busy_timeout_ms)
            .with_context(|| format!("store.path {}", config.store.path.display()))?;
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(switchboard::daemon::secrets_key::rekey(
            &config.store.secret_key_env,
            &config.store.secret_key_file,
            &store,
            &switchboard::boot::natives(&config, switchboard::natives::component::Listeners::Skip)?,
            drop_old,
        ))?;
    println!(
        "re-sealed {} value(s) under key {}; old keys still in {}: {}",
        done.values,
        done.key_id,
        config.store.secret_key_file.display(),
        if done.kept.is_empty() {
            "none".to_owned()
        } else {
            done.kept.join(", ")
        }
    );
    Ok(())
}

fn token(path: Option<PathBuf>, command: TokenCmd) -> anyhow::Result<()> {
    use switchboard::auth::{Scopes, TokenKeeper};
    use switchboard::domain::Idn;
    let config = Config::load(path.as_deref(), &boot::sections())?;
    let store =
        switchboard::store::Store::open(&config.store.path, 64, config.store.busy_timeout_ms)
            .with_context(|| format!("store.path {}", config.store.path.display()))?;
    let keeper = TokenKeeper::new(store.clone(), config.auth.cache_ttl());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            match command {
                TokenCmd::Create {
                    account,
                    name,
                    scopes,
                    expires_at,
                } => {
                    let account = Idn::parse("account", &account)?;
                    let scopes = Scopes::parse(scopes.iter().map(String::as_str))
                        .map_err(|bad| anyhow::anyhow!("--scopes: {bad:?} is not a scope"))?;
                    store
                        .put_account(account.to_string(), String::new())
                        .await?;
                    let (text, record) = keeper.create(account, name, scopes, expires_at).await?;
                    eprintln!(
                        "token {} for account {} ({}); shown once:",
                        record.id,
                        record.account,
                        record.scopes.joined()
                    );
                    println!("{}", text.as_str());
                }
                TokenCmd::List { account } => {
                    let account = account.map(|a| Idn::parse("account", &a)).transpose()?;
                    for t in keeper.list(account).await? {
                        let state = match (t.revoked_at, t.expires_at) {
                            (Some(_), _) => "revoked".to_owned(),
                            (None, Some(e)) if e <= chrono::Utc::now() => "expired".to_owned(),
                            (None, Some(e)) => format!("expires {}", e.to_rfc3339()),
                            (None, None) => "live".to_owned(),
                        };
                        println!(
                            "{}\t{}\t{}\t{}\t{}",
                            t.id,
                            t.account,
                            t.name,
                            t.scopes.joined(),
                            state
                        );
                    }
                }
                TokenCmd::Revoke { id } => {
                    if !keeper.revoke(&id, |_| true).await? {
                        anyhow::bail!("no live token {id}");
                    }
                    println!("revoked {id}");
                }
            }
            anyhow::Ok(())
        })
}

fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref(), &boot::sections())?;
    let account = switchboard::domain::Idn::known(switchboard::domain::DEFAULT_ACCOUNT);
    let flows = flow_files::load_dir(&account, &config.flows.dir)?;
    // What `serve` would refuse: subscriptions that can never match, runners it does not have,
    // runner URLs with credentials or that the egress policy denies.
    use switchboard::domain::RunnerSpec;
    for (flow, _, path) in &flows {
        let name = format!("{}: {}/{}", path.display(), flow.agent, flow.flow);
        switchboard::routing::flow_table::check_subscriptions(flow)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let missing = match &flow.runner {
            RunnerSpec::Queue if config.transport.kind != TransportKind::Nats => {
                Some("queue runners need [transport] kind = \"nats\"")
            }
            RunnerSpec::Demo | RunnerSpec::Default if !boot::demo_runner(&config) => {
                Some("this runner needs [sandbox] demo_runner = true")
            }
            RunnerSpec::InProcess { .. } => Some("in-process runners exist only in tests"),
            _ => None,
        };
        if let Some(why) = missing {
            anyhow::bail!("{name}: runner: {why}");
        }
        if let RunnerSpec::Webhook { url, .. } = &flow.runner {
            if switchboard::outbound::has_userinfo(url) {
                anyhow::bail!(
                    "{name}: runner.url: {}",
                    switchboard::daemon::runner_secrets::USERINFO_REFUSED
                );
            }
            config
                .egress
                .policy()
                .judge_literal(url)
                .map_err(|e| anyhow::anyhow!("{name}: runner.url: {e}; see [egress] allow"))?;
        }
    }
    println!(
        "config ok; {} flow(s) in {}",
        flows.len(),
        config.flows.dir.display()
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    // A port already taken is reported before anything is created or migrated (the store, the
    // key file): the address is tried first, then given back for the server to bind.
    std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("http.listen {}: cannot listen there", config.http.listen))?;
    let exporter = switchboard::telemetry::exporter::Exporter::install()
        .context("installing the metrics recorder")?;
    actix_rt::System::new().block_on(async move {
        let signals = Signals::register()?;
        let daemon = boot::start(config, Some(exporter)).await?;
        let (server, addrs) = switchboard::http::bind(daemon.clone())
            .with_context(|| format!("binding {}", daemon.config().http.listen))?;
        for a in &addrs {
            tracing::info!(address = %a, "listening");
        }
        // Under systemd (Type=notify): ready once it listens. Without NOTIFY_SOCKET, nothing.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "telling systemd we are ready failed");
        }
        let handle = server.handle();
        let server = actix_rt::spawn(server);
        wait_for_signals(&daemon, signals).await?;
        shutdown(&daemon, handle).await;
        let _ = server.await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Returns on SIGTERM or Ctrl-C; SIGHUP reloads the flow files.
/// The signals the daemon answers, registered before it says it listens: a SIGHUP or SIGTERM
/// that comes right after must not find the default action (which ends the process).
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

async fn wait_for_signals(daemon: &Arc<Daemon>, signals: Signals) -> anyhow::Result<()> {
    let Signals { mut term, mut hup } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = hup.recv() => match daemon.reload_flow_files().await {
                Ok(n) => {
                    switchboard::telemetry::handles::flow_reload(true);
                    tracing::info!(flows = n, "flow files reloaded");
                }
                Err(e) => {
                    switchboard::telemetry::handles::flow_reload(false);
                    tracing::error!(error = %e, "flow files refused; the flows in force stay");
                }
            },
        }
    }
}

/// Stops admitting, lets running invocations finish up to the bound while the listener still
/// answers (`/readyz` 503 naming `draining`; runners' results still come in), then stops the
/// HTTP server gracefully and flushes the store.
async fn shutdown(daemon: &Arc<Daemon>, server: actix_web::dev::ServerHandle) {
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    daemon.drain();
    let bound = daemon.config().http.shutdown_timeout();
    let deadline = tokio::time::Instant::now() + bound;
    while daemon.engine().ingress().inflight() > 0 || !daemon.pending().is_empty() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                inflight = daemon.engine().ingress().inflight(),
                "shutdown bound reached; unfinished events stay in the inbox"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.farewells_done(deadline).await;
    server.stop(true).await;
    if let Err(e) = daemon.flush().await {
        tracing::error!(error = %e, "flushing the store");
    }
}
