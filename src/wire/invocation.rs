//! Invocations as skill runners receive them (webhook body, or batched in a queue message), and
//! the results runners send back (inline answer, `POST /v1/invocations/{id}/result`, or batched
//! on the results subject).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::{check_version_pub, CommandEnvelope, EnvelopeError, EventEnvelope, Limits};
use crate::domain::Command;
use crate::invocation::{Invocation, Outcome};

/// The session of the event's persona on the event's connector, if one is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWire {
    pub session_id: Uuid,
    pub integration_idn: String,
    pub connector_idn: String,
    pub started_at: DateTime<Utc>,
}

/// The flow instance the invocation runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowInstanceWire {
    pub account: String,
    pub agent_idn: String,
    pub flow_idn: String,
    pub persona_id: Uuid,
}

/// One invocation on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationWire {
    pub v: u32,
    pub invocation_id: Uuid,
    pub skill_idn: String,
    pub timeout_ms: u64,
    pub flow_instance: FlowInstanceWire,
    pub event: EventEnvelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionWire>,
    /// The daemon may have sent this invocation before (a replay after a restart): the
    /// invocation id is the same, so the runner can tell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redelivered: bool,
}

impl InvocationWire {
    pub fn from_domain(inv: &Invocation) -> Self {
        InvocationWire {
            v: super::envelope::VERSION,
            invocation_id: inv.id,
            skill_idn: inv.skill.to_string(),
            timeout_ms: inv.timeout.as_millis() as u64,
            flow_instance: FlowInstanceWire {
                account: inv.account.to_string(),
                agent_idn: inv.agent.to_string(),
                flow_idn: inv.flow.to_string(),
                persona_id: inv.persona.0,
            },
            event: EventEnvelope::from_domain(&inv.event.event),
            session: inv.session.as_ref().map(|s| SessionWire {
                session_id: s.id,
                integration_idn: s.integration.to_string(),
                connector_idn: s.connector.to_string(),
                started_at: s.started_at,
            }),
            redelivered: inv.event.event.redelivered,
        }
    }
}

/// A message on `<prefix>.invoke.<account>.<agent>`: one or more invocations for that agent,
/// in the order the daemon started them. Under load, invocations that waited for the same
/// subject travel together, so the stream stores one message for many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvocationBatchWire {
    pub v: u32,
    pub invocations: Vec<InvocationWire>,
}

/// A message on `<prefix>.results.<account>`: one or more answers, each naming its
/// `invocation_id`. A runner may answer a batch of invocations with one message, or each alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBatchWire {
    pub v: u32,
    pub results: Vec<ResultWire>,
}

impl ResultBatchWire {
    /// Checks the batch's own version; each result is checked when it is applied.
    pub fn check(&self) -> Result<(), EnvelopeError> {
        check_version_pub(self.v)?;
        if self.results.is_empty() {
            return Err(EnvelopeError {
                field: "results".into(),
                reason: "must hold at least one result".into(),
            });
        }
        Ok(())
    }
}

/// What a runner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultOutcome {
    /// The skill finished.
    Completed,
    /// The skill failed; `reason` says why.
    Failed,
    /// The skill still runs: these commands leave now, the outcome comes later.
    Pending,
}

/// A runner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultWire {
    /// The envelope version: 1.
    #[schema(minimum = 1, maximum = 1)]
    pub v: u32,
    /// Required on the results subject; the HTTP endpoint takes it from the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<Uuid>,
    pub outcome: ResultOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub commands: Vec<CommandEnvelope>,
}

/// A decoded answer: the outcome (none while pending) and the commands.
#[derive(Debug)]
pub struct RunnerAnswer {
    pub outcome: Option<Outcome>,
    pub commands: Vec<Command>,
}

impl ResultWire {
    pub fn into_domain(self, limits: Limits) -> Result<RunnerAnswer, EnvelopeError> {
        check_version_pub(self.v)?;
        let commands = self
            .commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                c.into_domain(limits).map_err(|e| EnvelopeError {
                    field: format!("commands[{i}].{}", e.field),
                    reason: e.reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = match self.outcome {
            ResultOutcome::Completed => Some(Outcome::Completed),
            ResultOutcome::Failed => Some(Outcome::Failed {
                reason: self
                    .reason
                    .unwrap_or_else(|| "the runner reported a failure".into()),
            }),
            ResultOutcome::Pending => None,
        };
        Ok(RunnerAnswer { outcome, commands })
    }
}
