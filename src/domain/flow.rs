//! Flows and their event subscriptions, as validated domain values.

use std::time::Duration;

use super::idn::{Idn, Name};

/// How an event joins its flow instance's execution queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InterruptMode {
    /// Append; run after everything before it.
    #[default]
    Queue,
    /// Cancel the running invocation (unless uninterruptible), drop every pending event, run now.
    Interrupt,
    /// Drop this event if the instance is running or has pending events; else run it.
    Cancel,
}

impl InterruptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InterruptMode::Queue => "queue",
            InterruptMode::Interrupt => "interrupt",
            InterruptMode::Cancel => "cancel",
        }
    }
}

/// Which skill a subscription runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SkillSelector {
    /// `skill_selector: skill_idn`.
    Skill(Name),
    /// `skill_selector: skill_idn_from_state`: the skill idn is the value of this state field.
    FromState(Idn),
}

/// `(event idn, integration or null, connector or null) → skill`, with an interrupt mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub event: Idn,
    pub integration: Option<Idn>,
    pub connector: Option<Idn>,
    pub skill: SkillSelector,
    pub interrupt_mode: InterruptMode,
}

impl Subscription {
    /// How specific the scope is: 2 = exact connector, 1 = connector null, 0 = integration null.
    pub fn specificity(&self) -> u8 {
        match (&self.integration, &self.connector) {
            (Some(_), Some(_)) => 2,
            (Some(_), None) => 1,
            (None, _) => 0,
        }
    }

    /// Whether an event on `(integration, connector)` named `event` matches this subscription.
    pub fn matches(&self, integration: &str, connector: &str, event: &str) -> bool {
        self.event.as_str() == event
            && self
                .integration
                .as_ref()
                .is_none_or(|i| i.as_str() == integration)
            && self
                .connector
                .as_ref()
                .is_none_or(|c| c.as_str() == connector)
    }
}

/// Whose value a state field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StateScope {
    /// One value per user persona.
    #[default]
    User,
    /// One value for the whole agent.
    Agent,
}

impl StateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StateScope::User => "user",
            StateScope::Agent => "agent",
        }
    }
}

/// A state field of a flow, read by `skill_idn_from_state`, written by `set_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateField {
    pub idn: Idn,
    pub scope: StateScope,
    pub default_value: Option<String>,
}

/// Where a flow's invocations go. The engine resolves it to a runner when the flow is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunnerSpec {
    /// The engine's default runner.
    #[default]
    Default,
    /// A runner registered in-process under this name (tests, embedding).
    InProcess { name: String },
    /// POST the invocation to a URL (the daemon issue).
    Webhook {
        url: String,
        /// Of one attempt.
        timeout: Duration,
        /// Attempts at most; `None`: as many as fit in `retry_for`.
        max_attempts: Option<u32>,
        /// How long failed attempts are retried, from the first one: an outage of the runner
        /// shorter than this loses nothing (the flow instance's queue waits meanwhile).
        retry_for: Duration,
    },
    /// Publish the invocation on the queue transport (the queue issue).
    Queue,
    /// The built-in demo runner of the sandbox.
    Demo,
}

impl RunnerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            RunnerSpec::Default => "default",
            RunnerSpec::InProcess { .. } => "in_process",
            RunnerSpec::Webhook { .. } => "webhook",
            RunnerSpec::Queue => "queue",
            RunnerSpec::Demo => "demo",
        }
    }
}

/// A flow of an agent: its subscriptions, state fields and runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub account: Idn,
    pub agent: Name,
    pub flow: Name,
    pub runner: RunnerSpec,
    /// Overrides the engine's invocation deadline for this flow.
    pub invocation_timeout: Option<Duration>,
    pub state_fields: Vec<StateField>,
    /// In the order the flow lists them: ties inside a flow are broken by this order.
    pub subscriptions: Vec<Subscription>,
}

impl Flow {
    pub fn state_field(&self, idn: &str) -> Option<&StateField> {
        self.state_fields.iter().find(|f| f.idn.as_str() == idn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(i: Option<&str>, c: Option<&str>) -> Subscription {
        Subscription {
            event: Idn::known("user_message"),
            integration: i.map(Idn::known),
            connector: c.map(Idn::known),
            skill: SkillSelector::Skill(Name::known("S")),
            interrupt_mode: InterruptMode::Queue,
        }
    }

    #[test]
    fn matching_and_specificity() {
        let exact = sub(Some("telegram"), Some("bot"));
        let integ = sub(Some("telegram"), None);
        let any = sub(None, None);
        assert_eq!(
            (exact.specificity(), integ.specificity(), any.specificity()),
            (2, 1, 0)
        );
        assert!(exact.matches("telegram", "bot", "user_message"));
        assert!(!exact.matches("telegram", "bot2", "user_message"));
        assert!(integ.matches("telegram", "bot2", "user_message"));
        assert!(!integ.matches("sandbox", "bot", "user_message"));
        assert!(any.matches("sandbox", "x", "user_message"));
        assert!(!any.matches("sandbox", "x", "timer"));
    }
}

/// A stable number for a flow `(account, agent, flow)`, never reused while the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);
