//! The on-disk shape of one catalog entry (`src/catalog/integrations/*.yaml`), as serde reads it.
//!
//! These are storage types: [`super::Catalog`] turns them into the typed, validated domain values
//! the rest of the daemon uses. Every field is named in the YAML; unknown fields are refused so a
//! typo in the catalog fails the build's tests instead of silently disappearing.

use serde::{Deserialize, Serialize};

/// One integration as written in its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    /// snake_case identifier, e.g. `twilio_messenger`.
    pub idn: String,
    pub title: String,
    /// Free text category from seed 000 (`Chat`, `Messaging`, `Voice/Telephony`, …).
    pub category: String,
    /// `chat`, `phone`, `sms`, or absent for non-conversational integrations.
    #[serde(default)]
    pub channel: Option<ChannelSpec>,
    /// `native`: the daemon runs it. `external`: an adapter feeds it over a transport.
    pub runs: RunsSpec,
    /// `false` only for the internal `system` integration.
    #[serde(default = "yes")]
    pub listed: bool,
    /// Accepts event idns not declared under `events` (webhooks, system events, timers' `eventIdn`).
    #[serde(default)]
    pub custom_events: bool,
    /// Accepts command idns not declared under `commands` (outgoing webhooks of `api`).
    #[serde(default)]
    pub custom_commands: bool,
    /// Connectors that always exist and always run (`system` on conversational integrations).
    #[serde(default)]
    pub internal_connectors: Vec<String>,
    pub description: String,
    #[serde(default)]
    pub integration_settings: Vec<SettingSpec>,
    #[serde(default)]
    pub connector_settings: Vec<SettingSpec>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSpec {
    Chat,
    Phone,
    Sms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunsSpec {
    Native,
    External,
}

/// An ISettingPreset (seed 000): the description of one integration or connector setting.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    pub idn: String,
    pub title: String,
    pub control_type: ControlType,
    pub value_type: ValueType,
    #[serde(default)]
    pub is_required: bool,
    #[serde(default)]
    pub is_readonly: bool,
    #[serde(default)]
    pub is_secret: bool,
    /// Always a string, as every setting value is; parsed against `value_type` at load.
    #[serde(default)]
    pub default_value: Option<String>,
    pub description: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub possible_values: Vec<String>,
    #[serde(default)]
    pub possible_values_only: bool,
    /// A number's smallest value (inclusive). Every number setting declares its range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// A number's largest value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A number that must be whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer: bool,
    /// What a string must be, beyond a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SettingFormat>,
}

/// What a string setting must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettingFormat {
    /// An IANA time zone name (`Europe/Berlin`).
    TimeZone,
    /// An absolute `http` or `https` URL.
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlType {
    Text,
    Textarea,
    Password,
    Number,
    Switch,
    Select,
    Json,
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Number,
    Bool,
    Enum,
    Json,
}

/// An event the integration emits.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub idn: String,
    pub description: String,
    #[serde(default)]
    pub arguments: Vec<ArgumentSpec>,
}

/// A command the integration accepts.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub idn: String,
    pub description: String,
    #[serde(default)]
    pub arguments: Vec<ArgumentSpec>,
    /// Events that report the command's result (`result_success`, `result_error`, or its own).
    #[serde(default)]
    pub result_events: Vec<String>,
    /// Another idn this command is also known by (`set_repeatable_timer` for `set_timer`).
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One argument of an event or a command. Every argument value is a string on the wire.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgumentSpec {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    pub description: String,
}
