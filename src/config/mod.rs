//! The daemon's configuration: typed sections with named defaults, read from
//! `config/switchboard.toml` and `SWITCHBOARD_<SECTION>__<KEY>` environment variables, and
//! validated at load with errors that name the key.
//!
//! `config/switchboard.toml` is the annotated example: every key with its default, in the
//! order of the structs here. [`Config::load`] layers, last wins: the defaults, the file, the
//! environment (`SWITCHBOARD_HTTP__LISTEN=127.0.0.1:0` sets `http.listen`).
//!
//! The natives' sections are theirs: each native's type lives in its folder and is declared by
//! a `natives::section::Section` on its registration line; [`Config::load`] is given those and
//! reads them beside the daemon's (same layers, same errors), into [`Config::natives`].

mod auth;
mod dead_letters;
mod egress;
mod engine;
mod envelope;
mod error;
mod flows;
mod http;
mod limits;
mod load;
mod log;
mod runners;
mod store;
mod transport;

use serde::{Deserialize, Serialize};

use crate::natives::section::Sections;
pub use auth::{AuthConfig, AutoWord, MetricsConfig, Switch};
pub use dead_letters::DeadLettersConfig;
pub use egress::EgressConfig;
pub use engine::EngineSection;
pub use envelope::EnvelopeSection;
pub use error::{ConfigError, Origin};
pub use flows::FlowsConfig;
pub use http::HttpConfig;
pub use limits::LimitsConfig;
pub use log::{LogConfig, LogFormat};
pub use runners::RunnersConfig;
pub use store::StoreConfig;
pub use transport::{NatsConfig, TransportConfig, TransportKind, WireEncoding};

/// Everything the daemon is configured with; one field per section of the file, and the
/// natives' sections. Unknown top-level keys are refused by [`Config::load`] (against these
/// fields and the natives' keys), unknown keys inside a section by its type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub dead_letters: DeadLettersConfig,
    pub engine: EngineSection,
    pub envelope: EnvelopeSection,
    pub flows: FlowsConfig,
    pub runners: RunnersConfig,
    pub egress: EgressConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub transport: TransportConfig,
    /// The natives' sections as loaded (`natives.get::<T>()`; defaults when not loaded).
    #[serde(skip)]
    pub natives: Sections,
}

impl Config {
    /// The file [`Config::load`] reads when no path is given; its absence is not an error.
    pub const DEFAULT_PATH: &'static str = "config/switchboard.toml";
    /// Prefix of the environment variables that override keys.
    pub const ENV_PREFIX: &'static str = "SWITCHBOARD_";
    /// Separator of section and key in those variables' names.
    pub const ENV_SEPARATOR: &'static str = "__";
    /// The daemon's own sections, in the order of the fields (and of the example file).
    pub const SECTIONS: &'static [&'static str] = &[
        "http",
        "store",
        "auth",
        "metrics",
        "dead_letters",
        "engine",
        "envelope",
        "flows",
        "runners",
        "egress",
        "limits",
        "log",
        "transport",
    ];

    /// Checks every value; the first one refused is named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.store.validate()?;
        self.auth.validate()?;
        self.dead_letters.validate()?;
        self.engine.validate()?;
        self.envelope.validate()?;
        self.flows.validate()?;
        self.runners.validate()?;
        self.egress.validate()?;
        self.limits.validate()?;
        self.log.validate()?;
        self.transport.validate()?;
        Ok(())
    }

    /// The environment variable that overrides `key` (`http.listen` →
    /// `SWITCHBOARD_HTTP__LISTEN`).
    pub fn env_var_name(key: &str) -> String {
        let mut name = String::from(Self::ENV_PREFIX);
        for (i, part) in key.split('.').enumerate() {
            if i > 0 {
                name.push_str(Self::ENV_SEPARATOR);
            }
            name.push_str(&part.to_ascii_uppercase());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::wire::Limits;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn engine_defaults_are_the_engine_s() {
        let ours = EngineSection::default().to_engine_config();
        let engine = EngineConfig::default();
        assert_eq!(ours.workers, EngineSection::DEFAULT_WORKERS);
        assert_eq!(ours.invocation_timeout, engine.invocation_timeout);
        assert_eq!(ours.flow_idle_timeout, engine.flow_idle_timeout);
        assert_eq!(ours.session_idle_timeout, engine.session_idle_timeout);
        assert_eq!(ours.session_sweep_interval, engine.session_sweep_interval);
        assert_eq!(
            ours.max_pending_per_flow_instance,
            engine.max_pending_per_flow_instance
        );
        assert_eq!(ours.inflight_limit, engine.inflight_limit);
        assert_eq!(ours.dedupe_window, engine.dedupe_window);
        assert_eq!(ours.dedupe_capacity, engine.dedupe_capacity);
        assert_eq!(ours.command_act_ttl, engine.command_act_ttl);
        assert_eq!(ours.command_act_capacity, engine.command_act_capacity);
        assert_eq!(ours.flow_state_ttl, engine.flow_state_ttl);
        assert_eq!(ours.flow_state_capacity, engine.flow_state_capacity);
        assert_eq!(EngineSection::DEFAULT_SESSION_IDLE_TIMEOUT_MS, 1_800_000);
    }

    #[test]
    fn envelope_defaults_are_the_wire_s() {
        let ours = EnvelopeSection::default().limits();
        let wire = Limits::default();
        assert_eq!(ours.max_arguments, wire.max_arguments);
        assert_eq!(ours.max_argument_bytes, wire.max_argument_bytes);
    }

    #[test]
    fn each_rule_names_its_key() {
        type Edit = fn(&mut Config);
        let cases: &[(&str, Edit, &str)] = &[
            (
                "http.max_body_bytes",
                |c| c.http.max_body_bytes = 1023,
                "must be at least 1024",
            ),
            (
                "http.shutdown_timeout_ms",
                |c| c.http.shutdown_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "store.path",
                |c| c.store.path = "".into(),
                "must not be empty",
            ),
            (
                "store.secret_key_file",
                |c| c.store.secret_key_file = "".into(),
                "must not be empty",
            ),
            (
                "store.secret_key_env",
                |c| c.store.secret_key_env = " ".into(),
                "must not be empty",
            ),
            (
                "store.secret_key_env",
                |c| c.store.secret_key_env = "A=B".into(),
                "\"A=B\" is not an environment variable name",
            ),
            (
                "store.busy_timeout_ms",
                |c| c.store.busy_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.invocation_timeout_ms",
                |c| c.engine.invocation_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.flow_idle_timeout_ms",
                |c| c.engine.flow_idle_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.session_idle_timeout_ms",
                |c| c.engine.session_idle_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.session_sweep_interval_ms",
                |c| c.engine.session_sweep_interval_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.max_pending_per_flow_instance",
                |c| c.engine.max_pending_per_flow_instance = 0,
                "must be at least 1",
            ),
            (
                "engine.inflight_limit",
                |c| c.engine.inflight_limit = 0,
                "must be at least 1",
            ),
            (
                "engine.dedupe_window_ms",
                |c| c.engine.dedupe_window_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.dedupe_capacity",
                |c| c.engine.dedupe_capacity = 0,
                "must be at least 1",
            ),
            (
                "engine.command_act_ttl_ms",
                |c| c.engine.command_act_ttl_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.command_act_capacity",
                |c| c.engine.command_act_capacity = 0,
                "must be at least 1",
            ),
            (
                "engine.flow_state_ttl_ms",
                |c| c.engine.flow_state_ttl_ms = 0,
                "must be greater than 0",
            ),
            (
                "engine.flow_state_capacity",
                |c| c.engine.flow_state_capacity = 0,
                "must be at least 1",
            ),
            (
                "envelope.max_arguments",
                |c| c.envelope.max_arguments = 0,
                "must be at least 1",
            ),
            (
                "envelope.max_argument_bytes",
                |c| c.envelope.max_argument_bytes = 0,
                "must be at least 1",
            ),
            (
                "flows.dir",
                |c| c.flows.dir = "".into(),
                "must not be empty",
            ),
            (
                "runners.default_timeout_ms",
                |c| c.runners.default_timeout_ms = 0,
                "must be greater than 0",
            ),
            (
                "runners.default_max_attempts",
                |c| c.runners.default_max_attempts = 0,
                "must be at least 1",
            ),
            (
                "runners.backoff_initial_ms",
                |c| c.runners.backoff_initial_ms = 0,
                "must be greater than 0",
            ),
            (
                "runners.backoff_max_ms",
                |c| c.runners.backoff_max_ms = 0,
                "must be greater than 0",
            ),
            (
                "runners.backoff_initial_ms",
                |c| c.runners.backoff_initial_ms = 5001,
                "must not exceed runners.backoff_max_ms (5001 > 5000)",
            ),
            (
                "egress.allow",
                |c| c.egress.allow = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
                "\"10.0.0.0/33\" is not a CIDR block",
            ),
            (
                "transport.nats.invocation_batch_max",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.invocation_batch_max = 0;
                },
                "must be at least 1",
            ),
            (
                "transport.nats.invocation_batch_max",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.invocation_batch_max = 1001;
                },
                "must be at most 1000",
            ),
            (
                "transport.nats.invocation_batches_in_flight",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.invocation_batches_in_flight = 0;
                },
                "must be at least 1",
            ),
            (
                "transport.nats.partitions",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.partitions = 1025;
                },
                "must be at most 1024",
            ),
            (
                "transport.nats.member_ttl_ms",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.member_ttl_ms = 2500;
                },
                "must be whole seconds, at least 1000",
            ),
            (
                "transport.nats.members_bucket",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.members_bucket = "a.b".into();
                },
                "must not contain '.', '*', '>' or spaces",
            ),
            (
                "transport.nats.state_bucket",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.state_bucket = "a b".into();
                },
                "must not contain '.', '*', '>' or spaces",
            ),
            (
                "transport.nats.control_bucket",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.control_bucket = "a b".into();
                },
                "must not contain '.', '*', '>' or spaces",
            ),
            (
                "transport.nats.control_bucket",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.control_bucket = NatsConfig::DEFAULT_MEMBERS_BUCKET.into();
                },
                "must differ from transport.nats.members_bucket",
            ),
            (
                "transport.nats.state_bucket",
                |c| {
                    c.transport.kind = TransportKind::Nats;
                    c.transport.nats.state_bucket = NatsConfig::DEFAULT_CONTROL_BUCKET.into();
                },
                "must differ from transport.nats.members_bucket and control_bucket",
            ),
            (
                "log.level",
                |c| c.log.level = "".into(),
                "must not be empty",
            ),
            (
                "log.level",
                |c| c.log.level = "switchboard=loud".into(),
                "invalid filter directive \"switchboard=loud\"",
            ),
        ];
        for (key, edit, reason) in cases {
            let mut config = Config::default();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.key(), Some(*key), "{err}");
            assert!(
                err.to_string().starts_with(&format!("{key}: {reason}")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn limits_at_their_bounds_are_accepted() {
        let mut config = Config::default();
        config.http.max_body_bytes = HttpConfig::MIN_MAX_BODY_BYTES;
        config.http.workers = 0;
        config.engine.workers = 0;
        config.engine.inflight_limit = 1;
        config.runners.default_max_attempts = 1;
        config.runners.backoff_initial_ms = config.runners.backoff_max_ms;
        config.transport.kind = TransportKind::Nats;
        config.transport.nats.invocation_batch_max = 1000;
        config.transport.nats.invocation_batches_in_flight = 1;
        config.validate().unwrap();
    }

    #[test]
    fn sections_are_the_fields() {
        let dict: figment::value::Dict =
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .extract()
                .unwrap();
        let mut fields: Vec<&str> = dict.keys().map(String::as_str).collect();
        let mut listed = Config::SECTIONS.to_vec();
        fields.sort();
        listed.sort();
        assert_eq!(fields, listed);
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            Config::env_var_name("http.listen"),
            "SWITCHBOARD_HTTP__LISTEN"
        );
        assert_eq!(
            Config::env_var_name("engine.inflight_limit"),
            "SWITCHBOARD_ENGINE__INFLIGHT_LIMIT"
        );
    }
}
