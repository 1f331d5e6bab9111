//! `switchboard-telegram`: a reference adapter wiring a Telegram bot to a Switchboard daemon
//! without NATS. In: it long-polls the Bot API's `getUpdates` and POSTs each text message to
//! the daemon's `POST /v1/events` as a `user_message` of its `telegram` connector (`poller.rs`).
//! Out: it serves the connector's delivery endpoint, where the daemon POSTs the connector's
//! commands as signed webhooks, and carries them out with `sendMessage` / `deleteMessage`,
//! reporting each outcome as a result event (`commands.rs`). Secrets (the daemon token, the
//! bot token, the delivery secret) come from the environment and show in no log line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use clap::{Parser, ValueEnum};
use reqwest::Url;
use switchboard::domain::Idn;
use switchboard::outbound::retry::Backoff;
use switchboard::outbound::{SigningKey, Verifier};

#[path = "switchboard-telegram/bot_api.rs"]
mod bot_api;
#[path = "switchboard-telegram/commands.rs"]
mod commands;
#[path = "switchboard-telegram/daemon_api.rs"]
mod daemon_api;
#[path = "switchboard-telegram/envelopes.rs"]
mod envelopes;
#[path = "switchboard-telegram/ledger.rs"]
mod ledger;
#[path = "switchboard-telegram/poller.rs"]
mod poller;

use bot_api::BotApi;
use commands::Endpoint;
use daemon_api::DaemonApi;
use envelopes::Target;
use ledger::Ledger;
use poller::Polling;

#[derive(Parser)]
#[command(
    version,
    about = "Telegram adapter for Switchboard (no NATS: HTTP both ways)"
)]
struct Cli {
    /// The daemon's address.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    daemon_url: Url,
    /// A daemon API token with `events:write`.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: String,
    /// The account of the connector (`default`: the token's).
    #[arg(long, env = "SWITCHBOARD_ACCOUNT", default_value = "default")]
    account: String,
    /// The daemon's `telegram` connector this adapter serves.
    #[arg(long, env = "SWITCHBOARD_CONNECTOR")]
    connector: String,
    /// The connector's `command_delivery_secret` (`whsec_…`, shown once when it was created).
    #[arg(long, env = "SWITCHBOARD_DELIVERY_SECRET", hide_env_values = true)]
    delivery_secret: String,
    /// Where the delivery endpoint listens; the connector's `command_delivery_url` is
    /// `http://<this address>/commands` (or where a proxy in front of it answers).
    #[arg(
        long,
        env = "TELEGRAM_ADAPTER_LISTEN",
        default_value = "127.0.0.1:8082"
    )]
    listen: SocketAddr,
    /// The bot's token, from @BotFather.
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    bot_token: String,
    /// The Bot API's address (a local Bot API server, or a fake in tests).
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    telegram_api_url: Url,
    /// Seconds one `getUpdates` waits for an update (Telegram's long-poll `timeout`).
    #[arg(long, env = "TELEGRAM_POLL_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=50))]
    poll_timeout: u64,
    /// Forward messages of group chats too (else private chats only).
    #[arg(long, env = "TELEGRAM_ALLOW_GROUP_CHATS")]
    allow_group_chats: bool,
    /// How `sendMessage` formats the agent's text.
    #[arg(long, env = "TELEGRAM_PARSE_MODE", value_enum, default_value_t = ParseMode::Plain)]
    parse_mode: ParseMode,
    /// Command acts remembered (for repeats and recalls), newest first.
    #[arg(long, env = "TELEGRAM_ADAPTER_REMEMBER", default_value_t = 100_000)]
    remember: usize,
    /// Log lines as JSON.
    #[arg(long, env = "TELEGRAM_ADAPTER_LOG_JSON")]
    log_json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ParseMode {
    Plain,
    Markdown,
    Html,
}

impl ParseMode {
    fn bot_api(self) -> Option<String> {
        match self {
            ParseMode::Plain => None,
            ParseMode::Markdown => Some("MarkdownV2".into()),
            ParseMode::Html => Some("HTML".into()),
        }
    }
}

/// Retries of the way in: from 1 s, doubling, up to a minute.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

fn logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging(cli.log_json);
    // Validated here, naming the option: the daemon would refuse every event otherwise.
    Idn::parse("--connector (SWITCHBOARD_CONNECTOR)", &cli.connector)?;
    Idn::parse("--account (SWITCHBOARD_ACCOUNT)", &cli.account)?;
    let key = SigningKey::parse(&cli.delivery_secret).map_err(|_| {
        anyhow::anyhow!(
            "--delivery-secret (SWITCHBOARD_DELIVERY_SECRET): {}",
            switchboard::outbound::signing::InvalidKey
        )
    })?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let bot = BotApi::new(client.clone(), &cli.telegram_api_url, &cli.bot_token)
        .map_err(|e| anyhow::anyhow!("--telegram-api-url, --bot-token: {e}"))?;
    let daemon = DaemonApi::new(client, &cli.daemon_url, cli.token.clone());
    let target = Target {
        account: cli.account.clone(),
        connector: cli.connector.clone(),
    };
    let endpoint = web::Data::new(Endpoint {
        verifier: Verifier::new(key),
        bot: bot.clone(),
        daemon: daemon.clone(),
        target: target.clone(),
        ledger: Ledger::new(cli.remember),
        parse_mode: cli.parse_mode.bot_api(),
    });
    let polling = Polling {
        wait: Duration::from_secs(cli.poll_timeout),
        groups: cli.allow_group_chats,
        backoff: BACKOFF,
    };
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(endpoint.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/commands", web::post().to(commands::receive))
        })
        .workers(2)
        .bind(cli.listen)?;
        let address = server.addrs()[0];
        let server = server.run();
        tracing::info!(%address, connector = %cli.connector, "listening");
        let poll = actix_web::rt::spawn(poller::run(bot, daemon, target, polling));
        let stopped = server.await;
        poll.abort();
        stopped
    })?;
    Ok(())
}
