//! The flow document: the YAML/JSON shape of `naf-events.yaml` subscriptions, plus the flow's
//! runner and state fields. Converted into [`crate::domain::Flow`] with every refusal naming
//! the field (`events[3].skill_idn`) and the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{
    Flow, Idn, IdnError, InterruptMode, Name, RunnerSpec, SkillSelector, StateField, StateScope,
    Subscription,
};
use crate::fault::{Blame, Fault};

/// A refused flow document: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FlowDocError {
    pub field: String,
    pub reason: String,
}

impl Blame for FlowDocError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

impl From<IdnError> for FlowDocError {
    fn from(e: IdnError) -> Self {
        FlowDocError {
            field: e.field,
            reason: format!("{} (got {:?})", e.reason, e.value),
        }
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FlowDocError {
    FlowDocError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One subscription as written in a flow document or the `naf-events.yaml` export.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDoc {
    /// The event's idn.
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub idn: String,
    /// Only in the flat export, where every row names its agent and flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_idn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_idn: Option<String>,
    #[serde(default = "default_selector")]
    pub skill_selector: String,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$", max_length = 64)]
    pub skill_idn: Option<String>,
    #[serde(default)]
    pub state_idn: Option<String>,
    #[serde(default)]
    pub integration_idn: Option<String>,
    #[serde(default)]
    pub connector_idn: Option<String>,
    #[serde(default)]
    pub interrupt_mode: Option<String>,
}

fn default_selector() -> String {
    "skill_idn".to_owned()
}

/// A state field declaration.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateFieldDoc {
    pub idn: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub default_value: Option<String>,
}

/// Where the flow's invocations go.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerDoc {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Webhook runners: how long failed attempts are retried (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_for_ms: Option<u64>,
}

/// How long a webhook runner's failed attempts are retried when the flow does not say.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(60 * 60);

/// One flow: `PUT /v1/flows/{agent}/{flow}` bodies and `config/flows/*.yaml` files.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_idn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_idn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerDoc>,
    /// Invocation deadline for this flow, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_timeout_ms: Option<u64>,
    #[serde(default)]
    pub state_fields: Vec<StateFieldDoc>,
    #[serde(default)]
    pub events: Vec<SubscriptionDoc>,
}

/// The flat export of a whole project (`naf-events.yaml`): every row names agent and flow.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionExport {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub generated_at: Option<String>,
    #[serde(default)]
    pub total_count: Option<usize>,
    pub events: Vec<SubscriptionDoc>,
}

fn opt_idn(field: String, v: &Option<String>) -> Result<Option<Idn>, FlowDocError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => Ok(Some(Idn::parse(&field, s)?)),
    }
}

impl SubscriptionDoc {
    /// Validates one subscription; `at` is its position, used in field names.
    pub fn to_domain(&self, at: usize) -> Result<Subscription, FlowDocError> {
        let f = |name: &str| format!("events[{at}].{name}");
        let event = Idn::parse(&f("idn"), &self.idn)?;
        let integration = opt_idn(f("integration_idn"), &self.integration_idn)?;
        let connector = opt_idn(f("connector_idn"), &self.connector_idn)?;
        if integration.is_none() && connector.is_some() {
            return Err(err(
                f("connector_idn"),
                "a connector scope needs an integration_idn",
            ));
        }
        let skill = match self.skill_selector.as_str() {
            "skill_idn" => match self.skill_idn.as_deref() {
                Some(s) if !s.is_empty() => SkillSelector::Skill(Name::parse(&f("skill_idn"), s)?),
                _ => {
                    return Err(err(
                        f("skill_idn"),
                        "required when skill_selector is skill_idn",
                    ))
                }
            },
            "skill_idn_from_state" => match self.state_idn.as_deref() {
                Some(s) if !s.is_empty() => {
                    SkillSelector::FromState(Idn::parse(&f("state_idn"), s)?)
                }
                _ => {
                    return Err(err(
                        f("state_idn"),
                        "required when skill_selector is skill_idn_from_state",
                    ))
                }
            },
            other => {
                return Err(err(
                    f("skill_selector"),
                    format!("must be skill_idn or skill_idn_from_state (got {other:?})"),
                ))
            }
        };
        let interrupt_mode = match self.interrupt_mode.as_deref() {
            None | Some("queue") => InterruptMode::Queue,
            Some("interrupt") => InterruptMode::Interrupt,
            Some("cancel") => InterruptMode::Cancel,
            Some(other) => {
                return Err(err(
                    f("interrupt_mode"),
                    format!("must be queue, interrupt or cancel (got {other:?})"),
                ))
            }
        };
        Ok(Subscription {
            event,
            integration,
            connector,
            skill,
            interrupt_mode,
        })
    }
}

impl RunnerDoc {
    pub fn to_domain(&self) -> Result<RunnerSpec, FlowDocError> {
        match self.kind.as_str() {
            "default" => Ok(RunnerSpec::Default),
            "in_process" => Ok(RunnerSpec::InProcess {
                name: self
                    .name
                    .clone()
                    .ok_or_else(|| err("runner.name", "required for kind in_process"))?,
            }),
            "webhook" => {
                let url = self
                    .url
                    .clone()
                    .ok_or_else(|| err("runner.url", "required for kind webhook"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(err("runner.url", "must be an http:// or https:// URL"));
                }
                if self.max_attempts == Some(0) {
                    return Err(err("runner.max_attempts", "must be at least 1"));
                }
                if self.retry_for_ms == Some(0) {
                    return Err(err("runner.retry_for_ms", "must be greater than 0"));
                }
                Ok(RunnerSpec::Webhook {
                    url,
                    timeout: Duration::from_millis(self.timeout_ms.unwrap_or(10_000)),
                    max_attempts: self.max_attempts,
                    retry_for: self
                        .retry_for_ms
                        .map_or(DEFAULT_RETRY_FOR, Duration::from_millis),
                })
            }
            "queue" => Ok(RunnerSpec::Queue),
            "demo" => Ok(RunnerSpec::Demo),
            other => Err(err(
                "runner.kind",
                format!("must be default, in_process, webhook, queue or demo (got {other:?})"),
            )),
        }
    }
}

impl FlowDoc {
    /// Validates the document as the flow `agent`/`flow` of `account`. Names in the path win;
    /// names in the body, when present, must agree with them.
    pub fn to_domain(&self, account: &Idn, agent: &str, flow: &str) -> Result<Flow, FlowDocError> {
        let agent = Name::parse("agent_idn", agent)?;
        let flow_name = Name::parse("flow_idn", flow)?;
        if let Some(a) = &self.agent_idn {
            if a != agent.as_str() {
                return Err(err("agent_idn", format!("{a:?} does not match the path")));
            }
        }
        if let Some(fl) = &self.flow_idn {
            if fl != flow_name.as_str() {
                return Err(err("flow_idn", format!("{fl:?} does not match the path")));
            }
        }
        let runner = match &self.runner {
            None => RunnerSpec::Default,
            Some(r) => r.to_domain()?,
        };
        let mut state_fields = Vec::with_capacity(self.state_fields.len());
        for (i, s) in self.state_fields.iter().enumerate() {
            let idn = Idn::parse(&format!("state_fields[{i}].idn"), &s.idn)?;
            if state_fields.iter().any(|f: &StateField| f.idn == idn) {
                return Err(err(format!("state_fields[{i}].idn"), "declared twice"));
            }
            let scope = match s.scope.as_deref() {
                None | Some("user") => StateScope::User,
                Some("agent") => StateScope::Agent,
                Some(other) => {
                    return Err(err(
                        format!("state_fields[{i}].scope"),
                        format!("must be user or agent (got {other:?})"),
                    ))
                }
            };
            state_fields.push(StateField {
                idn,
                scope,
                default_value: s.default_value.clone(),
            });
        }
        let subscriptions = self
            .events
            .iter()
            .enumerate()
            .map(|(i, s)| s.to_domain(i))
            .collect::<Result<Vec<_>, _>>()?;
        if self.invocation_timeout_ms == Some(0) {
            return Err(err("invocation_timeout_ms", "must be greater than 0"));
        }
        Ok(Flow {
            account: account.clone(),
            agent,
            flow: flow_name,
            runner,
            invocation_timeout: self.invocation_timeout_ms.map(Duration::from_millis),
            state_fields,
            subscriptions,
        })
    }

    /// The document of a domain flow: what `GET /v1/flows/{agent}/{flow}` answers.
    pub fn from_domain(f: &Flow) -> FlowDoc {
        let runner = match &f.runner {
            RunnerSpec::Default => None,
            RunnerSpec::InProcess { name } => Some(RunnerDoc {
                kind: "in_process".into(),
                name: Some(name.clone()),
                url: None,
                timeout_ms: None,
                max_attempts: None,
                retry_for_ms: None,
            }),
            RunnerSpec::Webhook {
                url,
                timeout,
                max_attempts,
                retry_for,
            } => Some(RunnerDoc {
                kind: "webhook".into(),
                name: None,
                url: Some(url.clone()),
                timeout_ms: Some(timeout.as_millis() as u64),
                max_attempts: *max_attempts,
                retry_for_ms: Some(retry_for.as_millis() as u64),
            }),
            other => Some(RunnerDoc {
                kind: other.kind().into(),
                name: None,
                url: None,
                timeout_ms: None,
                max_attempts: None,
                retry_for_ms: None,
            }),
        };
        FlowDoc {
            agent_idn: Some(f.agent.to_string()),
            flow_idn: Some(f.flow.to_string()),
            runner,
            invocation_timeout_ms: f.invocation_timeout.map(|d| d.as_millis() as u64),
            state_fields: f
                .state_fields
                .iter()
                .map(|s| StateFieldDoc {
                    idn: s.idn.to_string(),
                    scope: Some(s.scope.as_str().to_owned()),
                    default_value: s.default_value.clone(),
                })
                .collect(),
            events: f
                .subscriptions
                .iter()
                .map(|s| {
                    let (selector, skill, state) = match &s.skill {
                        SkillSelector::Skill(n) => ("skill_idn", Some(n.to_string()), None),
                        SkillSelector::FromState(f) => {
                            ("skill_idn_from_state", None, Some(f.to_string()))
                        }
                    };
                    SubscriptionDoc {
                        idn: s.event.to_string(),
                        agent_idn: None,
                        flow_idn: None,
                        skill_selector: selector.to_owned(),
                        skill_idn: skill,
                        state_idn: state,
                        integration_idn: s.integration.as_ref().map(|i| i.to_string()),
                        connector_idn: s.connector.as_ref().map(|c| c.to_string()),
                        interrupt_mode: Some(s.interrupt_mode.as_str().to_owned()),
                    }
                })
                .collect(),
        }
    }

    /// Parses a flow document from YAML (JSON is YAML too), within the bounds of
    /// [`super::flow_bounds`] (checked first, on the events of a linear parse).
    pub fn from_yaml(text: &str) -> Result<FlowDoc, FlowDocError> {
        super::flow_bounds::check(text)?;
        serde_yaml_ng::from_str(text).map_err(|e| err("document", e.to_string()))
    }
}

impl SubscriptionExport {
    pub fn from_yaml(text: &str) -> Result<Self, FlowDocError> {
        super::flow_bounds::check(text)?;
        serde_yaml_ng::from_str(text).map_err(|e| err("document", e.to_string()))
    }

    /// Groups the rows into flows, keeping each flow's rows in export order.
    pub fn to_flows(&self, account: &Idn) -> Result<Vec<Flow>, FlowDocError> {
        let mut grouped: BTreeMap<(String, String), FlowDoc> = BTreeMap::new();
        for (i, row) in self.events.iter().enumerate() {
            let agent = row
                .agent_idn
                .clone()
                .ok_or_else(|| err(format!("events[{i}].agent_idn"), "required in an export"))?;
            let flow = row
                .flow_idn
                .clone()
                .ok_or_else(|| err(format!("events[{i}].flow_idn"), "required in an export"))?;
            let mut sub = row.clone();
            sub.agent_idn = None;
            sub.flow_idn = None;
            // Validate with the export's own row number so errors point at the right line.
            row.to_domain(i)?;
            grouped.entry((agent, flow)).or_default().events.push(sub);
        }
        grouped
            .iter()
            .map(|((agent, flow), doc)| doc.to_domain(account, agent, flow))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Idn {
        Idn::known("default")
    }

    #[test]
    fn parses_a_flow_document() {
        let doc = FlowDoc::from_yaml(
            r#"
runner: {kind: in_process, name: test}
state_fields:
  - {idn: reply_skill, scope: user, default_value: ReplySkill}
events:
  - idn: user_message
    skill_selector: skill_idn_from_state
    state_idn: reply_skill
    integration_idn: sandbox
    connector_idn: null
    interrupt_mode: interrupt
  - idn: timer
    skill_idn: OnTimer
"#,
        )
        .unwrap();
        let flow = doc.to_domain(&account(), "Agent", "MainFlow").unwrap();
        assert_eq!(
            flow.runner,
            RunnerSpec::InProcess {
                name: "test".into()
            }
        );
        assert_eq!(flow.subscriptions.len(), 2);
        assert_eq!(
            flow.subscriptions[0].skill,
            SkillSelector::FromState(Idn::known("reply_skill"))
        );
        assert_eq!(
            flow.subscriptions[0].interrupt_mode,
            InterruptMode::Interrupt
        );
        assert_eq!(flow.subscriptions[1].integration, None);
        assert_eq!(
            flow.state_field("reply_skill")
                .unwrap()
                .default_value
                .as_deref(),
            Some("ReplySkill")
        );
    }

    #[test]
    fn documents_round_trip_through_the_domain() {
        let text = r#"
runner: {kind: webhook, url: "http://127.0.0.1:9/run", timeout_ms: 500, max_attempts: 2}
state_fields: [{idn: s, scope: agent, default_value: X}]
events:
  - {idn: user_message, skill_selector: skill_idn_from_state, state_idn: s, integration_idn: sandbox}
  - {idn: timer, skill_idn: T, interrupt_mode: cancel}
"#;
        let flow = FlowDoc::from_yaml(text)
            .unwrap()
            .to_domain(&account(), "A", "F")
            .unwrap();
        let doc = FlowDoc::from_domain(&flow);
        assert_eq!(doc.to_domain(&account(), "A", "F").unwrap(), flow);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("events: [{idn: Bad}]", "events[0].idn"),
            ("events: [{idn: x}]", "events[0].skill_idn"),
            (
                "events: [{idn: x, skill_selector: skill_idn_from_state}]",
                "events[0].state_idn",
            ),
            (
                "events: [{idn: x, skill_idn: S, interrupt_mode: later}]",
                "events[0].interrupt_mode",
            ),
            (
                "events: [{idn: x, skill_idn: S, connector_idn: c}]",
                "events[0].connector_idn",
            ),
            (
                "events: [{idn: x, skill_idn: S, skill_selector: random}]",
                "events[0].skill_selector",
            ),
            ("runner: {kind: carrier_pigeon}", "runner.kind"),
            ("runner: {kind: webhook}", "runner.url"),
            ("runner: {kind: webhook, url: 'ftp://x'}", "runner.url"),
            ("state_fields: [{idn: a}, {idn: a}]", "state_fields[1].idn"),
            ("agent_idn: Other", "agent_idn"),
        ];
        for (yaml, field) in cases {
            let e = FlowDoc::from_yaml(yaml)
                .and_then(|d| d.to_domain(&account(), "Agent", "Flow"))
                .unwrap_err();
            assert_eq!(e.field, field, "for {yaml}: {e}");
        }
        let e = FlowDoc::from_yaml("evnets: []").unwrap_err();
        assert_eq!(e.field, "document");
        assert!(e.reason.contains("evnets"), "{}", e.reason);
    }

    #[test]
    fn every_naf_subscription_names_an_event_its_integration_emits() {
        let text = include_str!("../../tests/fixtures/naf-events.yaml");
        let export = SubscriptionExport::from_yaml(text).unwrap();
        let c = crate::catalog::Catalog::builtin();
        for row in &export.events {
            let integ = row.integration_idn.as_deref().unwrap();
            let i = c
                .get(integ)
                .unwrap_or_else(|| panic!("{integ} not in catalog"));
            assert!(i.emits(&row.idn), "{integ} does not emit {}", row.idn);
        }
    }
}
