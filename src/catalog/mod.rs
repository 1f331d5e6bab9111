//! The built-in integration catalog: settings presets, the events each
//! integration emits and the commands it accepts. The data is YAML compiled into the binary
//! (`src/catalog/integrations/*.yaml`) and loaded once into typed, validated values.

pub mod settings;
pub mod spec;

use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::domain::Idn;
pub use spec::{
    ArgumentSpec, ChannelSpec as Channel, CommandSpec, ControlType, EventSpec, RunsSpec as Runs,
    SettingFormat, SettingSpec, ValueType,
};

/// The catalog files, compiled in. One entry per integration.
const SOURCES: &[(&str, &str)] = &[
    ("api", include_str!("integrations/api.yaml")),
    ("apify", include_str!("integrations/apify.yaml")),
    (
        "customer_intercom",
        include_str!("integrations/customer_intercom.yaml"),
    ),
    (
        "google_calendar",
        include_str!("integrations/google_calendar.yaml"),
    ),
    ("http", include_str!("integrations/http.yaml")),
    ("magic_api", include_str!("integrations/magic_api.yaml")),
    (
        "magic_browser",
        include_str!("integrations/magic_browser.yaml"),
    ),
    ("newo_chat", include_str!("integrations/newo_chat.yaml")),
    ("newo_sms", include_str!("integrations/newo_sms.yaml")),
    ("newo_voice", include_str!("integrations/newo_voice.yaml")),
    (
        "program_timer",
        include_str!("integrations/program_timer.yaml"),
    ),
    ("sandbox", include_str!("integrations/sandbox.yaml")),
    ("system", include_str!("integrations/system.yaml")),
    ("telegram", include_str!("integrations/telegram.yaml")),
    ("twilio", include_str!("integrations/twilio.yaml")),
    (
        "twilio_messenger",
        include_str!("integrations/twilio_messenger.yaml"),
    ),
    ("vapi", include_str!("integrations/vapi.yaml")),
];

/// Namespace of the integration ids: `id = UUIDv5(namespace, idn)`, stable forever.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1f_0a3e_6c2d_4e8f_9a71_0d2c_3b4e_5f60);

/// A catalog file that does not load: a build defect, caught by the catalog's tests.
#[derive(Debug, thiserror::Error)]
#[error("catalog {integration}: {reason}")]
pub struct CatalogError {
    pub integration: String,
    pub reason: String,
}

/// An event an integration declares.
#[derive(Debug)]
pub struct EventDecl {
    pub spec: EventSpec,
    /// The names of the required arguments, in declaration order.
    pub required: Arc<[String]>,
}

/// A command an integration accepts.
#[derive(Debug)]
pub struct CommandDecl {
    pub idn: Idn,
    pub spec: CommandSpec,
    /// The names of the required arguments, in declaration order.
    pub required: Vec<String>,
}

impl CommandDecl {
    /// Whether this command's result is reported with `event` (for example `result_success`).
    pub fn reports(&self, event: &str) -> bool {
        self.spec.result_events.iter().any(|e| e == event)
    }
}

/// One integration of the catalog, typed.
#[derive(Debug)]
pub struct Integration {
    pub id: Uuid,
    pub idn: Idn,
    pub spec: spec::IntegrationSpec,
    pub internal_connectors: Vec<Idn>,
    events: FxHashMap<Idn, EventDecl>,
    /// By idn and by alias.
    commands: FxHashMap<Idn, Arc<CommandDecl>>,
}

impl Integration {
    pub fn channel(&self) -> Option<Channel> {
        self.spec.channel
    }

    /// The channel as a metric label: `chat`, `phone`, `sms` or `none`.
    pub fn channel_label(&self) -> &'static str {
        match self.spec.channel {
            Some(Channel::Chat) => "chat",
            Some(Channel::Phone) => "phone",
            Some(Channel::Sms) => "sms",
            None => "none",
        }
    }

    pub fn runs(&self) -> Runs {
        self.spec.runs
    }

    /// Whether the integration may emit `event` (declared, or the integration is open).
    pub fn emits(&self, event: &str) -> bool {
        self.spec.custom_events || self.events.contains_key(event)
    }

    pub fn event(&self, event: &str) -> Option<&EventDecl> {
        self.events.get(event)
    }

    /// The required arguments of `event` (none for an undeclared event of an open integration).
    pub fn required_arguments(&self, event: &str) -> Arc<[String]> {
        self.events
            .get(event)
            .map_or_else(|| Arc::from([]), |d| d.required.clone())
    }

    /// The declaration of `command` (by idn or alias). `None` for an undeclared command, even
    /// on an integration with `custom_commands`; use [`Integration::accepts`] to decide.
    pub fn command(&self, command: &str) -> Option<&Arc<CommandDecl>> {
        self.commands.get(command)
    }

    /// Whether the integration accepts `command` at all.
    pub fn accepts(&self, command: &str) -> bool {
        self.spec.custom_commands || self.commands.contains_key(command)
    }

    pub fn is_internal_connector(&self, connector: &str) -> bool {
        self.internal_connectors
            .iter()
            .any(|c| c.as_str() == connector)
    }

    fn load(file_idn: &str, text: &str) -> Result<Integration, CatalogError> {
        let fail = |reason: String| CatalogError {
            integration: file_idn.to_owned(),
            reason,
        };
        let mut spec: spec::IntegrationSpec =
            serde_yaml_ng::from_str(text).map_err(|e| fail(e.to_string()))?;
        if spec.runs == Runs::External {
            spec.connector_settings.extend(adapter_delivery_settings());
            spec.events.extend(adapter_events());
        }
        if spec.idn != file_idn {
            return Err(fail(format!("idn {:?} differs from its file", spec.idn)));
        }
        let idn = Idn::parse("idn", &spec.idn).map_err(|e| fail(e.to_string()))?;
        let internal_connectors = spec
            .internal_connectors
            .iter()
            .map(|c| Idn::parse("internal_connectors", c).map_err(|e| fail(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        for (kind, presets) in [
            ("integration_settings", &spec.integration_settings),
            ("connector_settings", &spec.connector_settings),
        ] {
            check_presets(presets).map_err(|r| fail(format!("{kind}: {r}")))?;
        }
        let mut events = FxHashMap::default();
        for e in &spec.events {
            let key = Idn::parse("events", &e.idn).map_err(|er| fail(er.to_string()))?;
            let required = e
                .arguments
                .iter()
                .filter(|a| a.required)
                .map(|a| a.name.clone())
                .collect();
            let decl = EventDecl {
                spec: e.clone(),
                required,
            };
            if events.insert(key, decl).is_some() {
                return Err(fail(format!("event {:?} declared twice", e.idn)));
            }
        }
        let mut commands = FxHashMap::default();
        for c in &spec.commands {
            let key = Idn::parse("commands", &c.idn).map_err(|er| fail(er.to_string()))?;
            let decl = Arc::new(CommandDecl {
                idn: key.clone(),
                required: c
                    .arguments
                    .iter()
                    .filter(|a| a.required)
                    .map(|a| a.name.clone())
                    .collect(),
                spec: c.clone(),
            });
            for name in std::iter::once(&c.idn).chain(&c.aliases) {
                let k = Idn::parse("commands", name).map_err(|er| fail(er.to_string()))?;
                if commands.insert(k, decl.clone()).is_some() {
                    return Err(fail(format!("command {name:?} declared twice")));
                }
            }
        }
        Ok(Integration {
            id: Uuid::new_v5(&ID_NAMESPACE, spec.idn.as_bytes()),
            idn,
            internal_connectors,
            events,
            commands,
            spec,
        })
    }
}

/// The connector settings every external integration gets: how its commands reach its adapter
/// without a message queue (`adapter_delivery.yaml`).
fn adapter_delivery_settings() -> Vec<SettingSpec> {
    static SETTINGS: OnceLock<Vec<SettingSpec>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            serde_yaml_ng::from_str(include_str!("adapter_delivery.yaml"))
                .expect("adapter_delivery.yaml reads")
        })
        .clone()
}

/// The events every external integration may send besides its own: its answers to a recall
/// (`adapter_events.yaml`).
fn adapter_events() -> Vec<EventSpec> {
    static EVENTS: OnceLock<Vec<EventSpec>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            serde_yaml_ng::from_str(include_str!("adapter_events.yaml"))
                .expect("adapter_events.yaml reads")
        })
        .clone()
}

/// Checks that presets are coherent: unique idns, enum values listed, defaults valid.
fn check_presets(presets: &[SettingSpec]) -> Result<(), String> {
    let mut seen = rustc_hash::FxHashSet::default();
    for p in presets {
        Idn::parse("idn", &p.idn).map_err(|e| e.to_string())?;
        if !seen.insert(p.idn.as_str()) {
            return Err(format!("setting {:?} declared twice", p.idn));
        }
        if p.value_type == ValueType::Enum && p.possible_values.is_empty() {
            return Err(format!("enum setting {:?} lists no possible_values", p.idn));
        }
        if p.value_type == ValueType::Number && (p.min.is_none() || p.max.is_none()) {
            return Err(format!(
                "number setting {:?} declares no min and max",
                p.idn
            ));
        }
        if p.value_type != ValueType::Number && (p.min.is_some() || p.max.is_some() || p.integer) {
            return Err(format!(
                "setting {:?} has a range but is not a number",
                p.idn
            ));
        }
        if let Some(d) = &p.default_value {
            crate::catalog::settings::check_value(p, d)
                .map_err(|r| format!("default of {:?}: {r}", p.idn))?;
        }
    }
    Ok(())
}

/// The whole catalog.
#[derive(Debug)]
pub struct Catalog {
    integrations: Vec<Arc<Integration>>,
    by_idn: FxHashMap<Idn, Arc<Integration>>,
    by_id: FxHashMap<Uuid, Arc<Integration>>,
}

impl Catalog {
    /// Loads the compiled-in catalog. Fails only on a defective catalog file.
    pub fn load() -> Result<Catalog, CatalogError> {
        let mut integrations = Vec::with_capacity(SOURCES.len());
        for (idn, text) in SOURCES {
            integrations.push(Arc::new(Integration::load(idn, text)?));
        }
        let by_idn = integrations
            .iter()
            .map(|i| (i.idn.clone(), i.clone()))
            .collect();
        let by_id = integrations.iter().map(|i| (i.id, i.clone())).collect();
        Ok(Catalog {
            integrations,
            by_idn,
            by_id,
        })
    }

    /// The compiled-in catalog, loaded once for the process.
    pub fn builtin() -> Arc<Catalog> {
        static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
        CATALOG
            .get_or_init(|| Arc::new(Catalog::load().expect("the built-in catalog loads")))
            .clone()
    }

    pub fn get(&self, idn: &str) -> Option<&Arc<Integration>> {
        self.by_idn.get(idn)
    }

    /// The metric labels of a command: the integration and command idns when the catalog
    /// declares them, else one bounded value (`unknown`; `custom` for an undeclared command an
    /// integration accepts, such as an `api` outgoing webhook). A skill's typo never becomes a
    /// series of its own.
    pub fn command_labels(&self, integration: &str, command: &str) -> (&str, &str) {
        match self.get(integration) {
            None => ("unknown", "unknown"),
            Some(i) => match i.command(command) {
                Some(d) => (i.idn.as_str(), d.idn.as_str()),
                None if i.accepts(command) => (i.idn.as_str(), "custom"),
                None => (i.idn.as_str(), "unknown"),
            },
        }
    }

    /// By idn or by id (the HTTP API accepts both).
    pub fn find(&self, id_or_idn: &str) -> Option<&Arc<Integration>> {
        self.get(id_or_idn).or_else(|| {
            Uuid::parse_str(id_or_idn)
                .ok()
                .and_then(|id| self.by_id.get(&id))
        })
    }

    /// Every integration, including the unlisted `system`.
    pub fn all(&self) -> &[Arc<Integration>] {
        &self.integrations
    }

    /// The integrations users see (`GET /v1/integrations`).
    pub fn listed(&self) -> impl Iterator<Item = &Arc<Integration>> {
        self.integrations.iter().filter(|i| i.spec.listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_loads_every_integration() {
        let c = Catalog::load().unwrap();
        let names: Vec<_> = c.all().iter().map(|i| i.idn.as_str()).collect();
        for n in [
            "api",
            "google_calendar",
            "http",
            "magic_api",
            "magic_browser",
            "newo_chat",
            "newo_sms",
            "newo_voice",
            "program_timer",
            "sandbox",
            "telegram",
            "twilio",
            "twilio_messenger",
            "vapi",
            "customer_intercom",
            "apify",
            "system",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        assert!(c.listed().all(|i| i.idn.as_str() != "system"));
        assert_eq!(c.listed().count(), c.all().len() - 1);
    }

    #[test]
    fn channels_follow_the_design() {
        let c = Catalog::builtin();
        let ch = |i: &str| c.get(i).unwrap().channel_label();
        for i in ["newo_chat", "telegram", "sandbox"] {
            assert_eq!(ch(i), "chat", "{i}");
        }
        for i in ["newo_voice", "vapi", "twilio"] {
            assert_eq!(ch(i), "phone", "{i}");
        }
        for i in ["twilio_messenger", "newo_sms"] {
            assert_eq!(ch(i), "sms", "{i}");
        }
        assert_eq!(ch("http"), "none");
        // Conversational integrations carry their internal `system` connector.
        for i in c.all().iter().filter(|i| i.channel().is_some()) {
            assert!(i.is_internal_connector("system"), "{}", i.idn);
        }
        let sys = c.get("system").unwrap();
        for conn in ["system", "project", "customer"] {
            assert!(sys.is_internal_connector(conn));
        }
    }

    #[test]
    fn ids_are_stable_and_findable() {
        let c = Catalog::builtin();
        let http = c.get("http").unwrap();
        assert_eq!(http.id, Uuid::new_v5(&ID_NAMESPACE, b"http"));
        assert_eq!(c.find(&http.id.to_string()).unwrap().idn.as_str(), "http");
        assert_eq!(c.find("http").unwrap().id, http.id);
        assert!(c.find("fax").is_none());
    }

    #[test]
    fn events_and_commands() {
        let c = Catalog::builtin();
        let tm = c.get("twilio_messenger").unwrap();
        assert!(tm.emits("user_message"));
        assert!(tm.emits("send_sms_error"));
        assert!(!tm.emits("made_up_event"));
        let send = tm.command("send_message").unwrap();
        assert!(send.required.contains(&"text".to_owned()));
        assert!(send.required.contains(&"phoneNumber".to_owned()));
        assert!(!tm.accepts("make_call"));
        // Open integrations.
        assert!(c.get("api").unwrap().emits("anything_custom"));
        assert!(c.get("system").unwrap().emits("book_slot"));
        assert!(c.get("api").unwrap().accepts("onboarding_setup"));
        // The older alias of set_timer.
        let timer = c.get("program_timer").unwrap();
        assert_eq!(
            timer.command("set_repeatable_timer").unwrap().idn.as_str(),
            "set_timer"
        );
        let http = c.get("http").unwrap();
        assert!(http
            .command("send_request")
            .unwrap()
            .reports("magic_http_response"));
    }
}
