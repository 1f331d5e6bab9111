//! Invocations as skill runners receive them (webhook body, or batched in a queue message), and
//! the results runners send back (inline answer, `POST /v1/invocations/{id}/result`, or batched
//! on the results subject).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::{check_version_pub, CommandEnvelope, EnvelopeError, EventEnvelope, Limits};
use crate::domain::{Command, Defect, Idn, DEFAULT_ACCOUNT};
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

/// The daemon gave up an invocation the runner may still be working on (it answered
/// `pending`, or had not answered yet): the runner may stop, and whatever it sends for it later
/// is refused. POSTed to a webhook runner's URL (signed like an invocation, `webhook-id`
/// `cancel-<invocation id>`), published on `<prefix>.cancel.<account>.<agent>` for queue
/// runners. An invocation has no `kind`; a notice's is `cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelNoticeWire {
    pub v: u32,
    pub kind: CancelKind,
    pub invocation_id: Uuid,
    /// `interrupted`, `superseded`, `cancelled` or `timed_out`.
    pub reason: String,
}

/// The kind of a [`CancelNoticeWire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelKind {
    Cancel,
}

impl CancelNoticeWire {
    pub fn new(invocation_id: Uuid, reason: &str) -> Self {
        CancelNoticeWire {
            v: super::envelope::VERSION,
            kind: CancelKind::Cancel,
            invocation_id,
            reason: reason.to_owned(),
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
    /// Command documents (one that is not is refused on its own: see [`CommandSlot`]).
    #[serde(default)]
    #[schema(value_type = Vec<CommandEnvelope>)]
    pub commands: Vec<CommandSlot>,
}

/// One command of a runner's answer: a command document, or whatever else stood there. A
/// defective command does not make the whole answer unreadable: it is refused on its own (see
/// [`Defect`]), and the commands beside it still leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandSlot {
    Command(CommandEnvelope),
    /// Not a command document (a required field missing, a field of the wrong type).
    Defective(serde_json::Value),
}

impl From<CommandEnvelope> for CommandSlot {
    fn from(c: CommandEnvelope) -> Self {
        CommandSlot::Command(c)
    }
}

/// The fields a command document must have.
const REQUIRED: [&str; 4] = ["v", "integration_idn", "connector_idn", "command_idn"];
/// Every field a command document may have.
const KNOWN: [&str; 10] = [
    "v",
    "id",
    "account",
    "integration_idn",
    "connector_idn",
    "command_idn",
    "arguments",
    "invocation_id",
    "command_act_id",
    "persona_id",
];

impl CommandSlot {
    /// The command, or a command carrying its [`Defect`] (field names prefixed `commands[i].`).
    fn into_domain(self, i: usize, limits: Limits) -> Command {
        // Where it was addressed: account, integration, connector, command (as sent).
        let (addressed, (field, reason)) = match self {
            CommandSlot::Command(c) => {
                let addressed = [
                    c.account.clone(),
                    c.integration_idn.clone(),
                    c.connector_idn.clone(),
                    c.command_idn.clone(),
                ]
                .map(Some);
                match c.into_domain(limits) {
                    Ok(c) => return c,
                    Err(e) => (addressed, (e.field, e.reason)),
                }
            }
            CommandSlot::Defective(value) => {
                let text = |name| value.get(name).and_then(serde_json::Value::as_str);
                let addressed = ["account", "integration_idn", "connector_idn", "command_idn"]
                    .map(|name| text(name).map(str::to_owned));
                (addressed, defect_of(&value))
            }
        };
        // Answered where it was addressed when that scope is readable, else on `system`.
        let idn = |at: usize| {
            addressed[at]
                .as_deref()
                .and_then(|s| Idn::parse("identifier", s).ok())
        };
        let account = idn(0).unwrap_or_else(|| Idn::known(DEFAULT_ACCOUNT));
        let (integration, connector) = match (idn(1), idn(2)) {
            (Some(i), Some(c)) => (i, c),
            _ => (Idn::known("system"), Idn::known("system")),
        };
        let command = idn(3).unwrap_or_else(|| Idn::known("unknown"));
        let mut c = Command::new(account, integration, connector, command);
        let field = if field.is_empty() {
            format!("commands[{i}]")
        } else {
            format!("commands[{i}].{field}")
        };
        c.defect = Some(Box::new(Defect { field, reason }));
        c
    }
}

/// What is wrong with something that is not a command document: the field, and why. Says
/// nothing of the values themselves (they are the runner's text).
fn defect_of(value: &serde_json::Value) -> (String, String) {
    let Some(fields) = value.as_object() else {
        return ("".into(), "not a command document (an object)".into());
    };
    if let Some(missing) = REQUIRED.iter().find(|f| !fields.contains_key(**f)) {
        return ((*missing).into(), "required".into());
    }
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        // Named only when it looks like a field name.
        let name = if unknown.len() <= 64
            && unknown
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            unknown.clone()
        } else {
            "".into()
        };
        return (name, "unknown field".into());
    }
    ("".into(), "a field has the wrong type".into())
}

/// A decoded answer: the outcome (none while pending) and the commands, defective ones
/// among them (see [`Command::defect`]).
#[derive(Debug)]
pub struct RunnerAnswer {
    pub outcome: Option<Outcome>,
    pub commands: Vec<Command>,
}

impl RunnerAnswer {
    /// The first defective command's defect, as an envelope error naming its field.
    pub fn first_defect(&self) -> Option<EnvelopeError> {
        self.commands.iter().find_map(|c| {
            c.defect.as_ref().map(|d| EnvelopeError {
                field: d.field.clone(),
                reason: d.reason.clone(),
            })
        })
    }
}

impl ResultWire {
    pub fn into_domain(self, limits: Limits) -> Result<RunnerAnswer, EnvelopeError> {
        check_version_pub(self.v)?;
        let commands = self
            .commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.into_domain(i, limits))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::envelope::Encoding;

    /// A result whose second command lacks its connector, in `encoding`.
    fn answer(encoding: Encoding) -> Vec<u8> {
        let json: serde_json::Value = serde_json::json!({
            "v": 1, "outcome": "pending", "commands": [
                {"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
                 "command_idn": "send_message", "arguments": {"text": "hi"}},
                {"v": 1, "integration_idn": "telegram", "command_idn": "send_message"},
                "not a command",
            ]
        });
        encoding.encode(&json)
    }

    #[test]
    fn a_defective_command_is_kept_with_its_defect_in_either_encoding() {
        for encoding in [Encoding::Json, Encoding::MessagePack] {
            let wire: ResultWire = encoding.decode(&answer(encoding)).unwrap();
            let decoded = wire.into_domain(Limits::default()).unwrap();
            assert!(decoded.outcome.is_none(), "pending");
            let defects: Vec<_> = decoded
                .commands
                .iter()
                .map(|c| {
                    c.defect
                        .as_ref()
                        .map(|d| (d.field.as_str(), d.reason.as_str()))
                })
                .collect();
            assert_eq!(
                defects,
                [
                    None,
                    Some(("commands[1].connector_idn", "required")),
                    Some(("commands[2]", "not a command document (an object)")),
                ],
                "{encoding:?}"
            );
            assert_eq!(decoded.commands[0].connector.as_str(), "bot");
            assert_eq!(decoded.commands[1].integration.as_str(), "system");
            assert_eq!(decoded.commands[1].command.as_str(), "send_message");
            assert_eq!(
                decoded.first_defect().unwrap().field,
                "commands[1].connector_idn"
            );
        }
    }

    #[test]
    fn a_field_refused_after_decoding_is_a_defect_too() {
        let wire: ResultWire = serde_json::from_str(
            r#"{"v":1,"outcome":"completed","commands":[
                {"v":1,"integration_idn":"telegram","connector_idn":"no spaces","command_idn":"send_message"}]}"#,
        )
        .unwrap();
        let decoded = wire.into_domain(Limits::default()).unwrap();
        let defect = decoded.commands[0].defect.as_ref().unwrap();
        assert_eq!(defect.field, "commands[0].connector_idn");
        assert_eq!(decoded.commands[0].integration.as_str(), "system");
    }
}
