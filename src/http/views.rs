//! JSON views of the HTTP API (wire types): what responses look like, built from domain values;
//! their schemas are the OpenAPI document's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::{CommandSpec, EventSpec, Integration, SettingSpec};
use crate::connectors::registry::ConnectorView;
use crate::dead_letter::{DeadLetter, DeadLetterPayload};
use crate::routing::explain::{ExplainedSubscription, Explanation};
use crate::session::SessionView;
use crate::store::records::SessionRow;
use crate::wire::envelope::{CommandEnvelope, EventEnvelope};

#[derive(Serialize, ToSchema)]
pub struct IntegrationJson<'a> {
    pub id: Uuid,
    pub idn: &'a str,
    pub title: &'a str,
    pub category: &'a str,
    pub channel: Option<&'static str>,
    pub runs: &'static str,
    pub is_disabled: bool,
    pub description: &'a str,
    pub integration_settings_descriptions: &'a [SettingSpec],
    pub connector_settings_descriptions: &'a [SettingSpec],
    pub outgoing_events_descriptions: &'a [EventSpec],
    pub incoming_commands_descriptions: &'a [CommandSpec],
}

impl<'a> IntegrationJson<'a> {
    pub fn of(i: &'a Integration) -> Self {
        IntegrationJson {
            id: i.id,
            idn: i.idn.as_str(),
            title: &i.spec.title,
            category: &i.spec.category,
            channel: i.channel().map(|_| i.channel_label()),
            runs: match i.runs() {
                crate::catalog::Runs::Native => "native",
                crate::catalog::Runs::External => "external",
            },
            is_disabled: false,
            description: &i.spec.description,
            integration_settings_descriptions: &i.spec.integration_settings,
            connector_settings_descriptions: &i.spec.connector_settings,
            outgoing_events_descriptions: &i.spec.events,
            incoming_commands_descriptions: &i.spec.commands,
        }
    }
}

/// A setting as `{idn, value}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingJson {
    pub idn: String,
    pub value: String,
}

pub fn settings_json(pairs: &[(String, String)]) -> Vec<SettingJson> {
    pairs
        .iter()
        .map(|(idn, value)| SettingJson {
            idn: idn.clone(),
            value: value.clone(),
        })
        .collect()
}

pub fn settings_pairs(list: Vec<SettingJson>) -> Vec<(String, String)> {
    list.into_iter().map(|s| (s.idn, s.value)).collect()
}

#[derive(Serialize, ToSchema)]
pub struct ConnectorJson {
    pub id: Uuid,
    pub title: String,
    pub connector_idn: String,
    pub integration_idn: String,
    pub status: &'static str,
    pub internal: bool,
    pub settings: Vec<SettingJson>,
    /// Secret settings the daemon generated for the connector (a client secret): in the
    /// creation answer only; store them now, they are never shown again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revealed: Vec<SettingJson>,
    pub created_at: String,
}

impl From<&ConnectorView> for ConnectorJson {
    fn from(v: &ConnectorView) -> Self {
        ConnectorJson {
            id: v.id,
            title: v.title.clone(),
            connector_idn: v.key.connector.to_string(),
            integration_idn: v.key.integration.to_string(),
            status: v.status.as_str(),
            internal: v.internal,
            settings: settings_json(&v.settings),
            revealed: settings_json(&v.revealed),
            created_at: v.created_at.to_rfc3339(),
        }
    }
}

/// `POST /v1/integrations/{integration}/connectors`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnector {
    pub title: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub connector_idn: String,
    #[serde(default)]
    pub settings: Vec<SettingJson>,
}

/// `PUT /v1/integrations/connectors/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnector {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub settings: Vec<SettingJson>,
}

/// A session: live, or ended (`?is_active=false`, with `ended_at` and `end_reason`).
#[derive(Serialize, ToSchema)]
pub struct SessionJson {
    pub id: Uuid,
    pub persona_id: Uuid,
    pub integration_idn: String,
    pub connector_idn: String,
    pub channel: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    pub is_active: bool,
}

impl From<&SessionView> for SessionJson {
    fn from(s: &SessionView) -> Self {
        SessionJson {
            id: s.id,
            persona_id: s.persona.0,
            integration_idn: s.integration.to_string(),
            connector_idn: s.connector.to_string(),
            channel: s.channel.to_owned(),
            started_at: s.started_at.to_rfc3339(),
            ended_at: None,
            end_reason: None,
            is_active: true,
        }
    }
}

impl SessionJson {
    /// An ended session as the store keeps it.
    pub fn ended(s: SessionRow, ended_at: String, end_reason: String) -> Self {
        SessionJson {
            id: s.id,
            persona_id: s.persona,
            integration_idn: s.integration,
            connector_idn: s.connector,
            channel: s.channel,
            started_at: s.started_at,
            ended_at: Some(ended_at),
            end_reason: Some(end_reason),
            is_active: false,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterJson {
    pub id: Uuid,
    pub reason: &'static str,
    pub detail: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventEnvelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandEnvelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<usize>,
}

impl From<&DeadLetter> for DeadLetterJson {
    fn from(d: &DeadLetter) -> Self {
        let mut j = DeadLetterJson {
            id: d.id,
            reason: d.reason.code(),
            detail: d.detail.clone(),
            at: d.at.to_rfc3339(),
            event: None,
            command: None,
            persona_id: None,
            raw_bytes: None,
        };
        match &d.payload {
            DeadLetterPayload::Event { event, persona } => {
                j.event = Some(EventEnvelope::from_domain(event));
                j.persona_id = persona.map(|p| p.0);
            }
            DeadLetterPayload::Command { command, persona } => {
                j.command = Some(CommandEnvelope::from_domain(command));
                j.persona_id = persona.map(|p| p.0);
            }
            DeadLetterPayload::Raw { bytes, .. } => j.raw_bytes = Some(bytes.len()),
        }
        j
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExplainedJson {
    pub agent_idn: String,
    pub flow_idn: String,
    pub position: u32,
    pub skill: String,
    pub interrupt_mode: &'static str,
    pub scope: &'static str,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl From<&ExplainedSubscription> for ExplainedJson {
    fn from(e: &ExplainedSubscription) -> Self {
        ExplainedJson {
            agent_idn: e.agent.clone(),
            flow_idn: e.flow.clone(),
            position: e.position,
            skill: e.skill.clone(),
            interrupt_mode: e.interrupt_mode.as_str(),
            scope: e.scope,
            why: e.why.clone(),
            warning: e.warning.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExplanationJson {
    pub admitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub matched: Vec<ExplainedJson>,
    pub not_matched: Vec<ExplainedJson>,
}

impl From<&Explanation> for ExplanationJson {
    fn from(x: &Explanation) -> Self {
        ExplanationJson {
            admitted: x.refused.is_none(),
            refused: x.refused.clone(),
            matched: x.matched.iter().map(Into::into).collect(),
            not_matched: x.not_matched.iter().map(Into::into).collect(),
        }
    }
}

/// `POST /v1/events`: the event's id; `accepted` (202) or `duplicate` (200, an
/// `external_event_id` seen before: the first event's id).
#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    pub id: Uuid,
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// `accepted`, and what the command became: sent for its invocation, or a command act.
#[derive(Serialize, ToSchema)]
pub struct CommandAccepted {
    #[schema(example = "accepted")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_act_id: Option<Uuid>,
}

/// `{"status": "accepted"}` (a runner's answer).
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// A replayed dead letter: `replayed`, with the new event's id or the command act's.
#[derive(Serialize, ToSchema)]
pub struct ReplayedJson {
    #[schema(example = "replayed")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_act_id: Option<Uuid>,
}

/// `/healthz`: `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `/readyz`: `ready` (200) or `not_ready` (503) with the failing checks; every check's
/// answer, `ok` or why not.
#[derive(Serialize, ToSchema)]
pub struct ReadinessJson {
    #[schema(example = "ready")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<Vec<&'static str>>,
    pub checks: BTreeMap<&'static str, String>,
}
