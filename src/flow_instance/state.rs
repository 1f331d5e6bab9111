//! Flow state fields: written by the `system` integration's `set_state` command, read by
//! `skill_idn_from_state` subscriptions when their invocation starts.

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::domain::{Flow, Idn, Name, PersonaId, StateScope};

/// Whose value: one persona's, or the whole agent's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateOwner {
    User(PersonaId),
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StateKey {
    account: Idn,
    agent: Name,
    flow: Name,
    field: Idn,
    owner: StateOwner,
}

/// Every flow's state values.
#[derive(Default)]
pub struct StateStore {
    values: DashMap<StateKey, String, FxBuildHasher>,
}

impl StateStore {
    pub fn set(&self, flow: &Flow, field: Idn, owner: StateOwner, value: String) {
        self.values.insert(
            StateKey {
                account: flow.account.clone(),
                agent: flow.agent.clone(),
                flow: flow.flow.clone(),
                field,
                owner,
            },
            value,
        );
    }

    /// The value of `field` for `persona`: the field's declared scope decides whose value is
    /// read; an undeclared field is read per user, then per agent. No value: the default.
    pub fn get(&self, flow: &Flow, field: &Idn, persona: PersonaId) -> Option<String> {
        let key = |owner| StateKey {
            account: flow.account.clone(),
            agent: flow.agent.clone(),
            flow: flow.flow.clone(),
            field: field.clone(),
            owner,
        };
        let declared = flow.state_field(field.as_str());
        let owners: &[StateOwner] = match declared.map(|d| d.scope) {
            Some(StateScope::User) => &[StateOwner::User(persona)],
            Some(StateScope::Agent) => &[StateOwner::Agent],
            None => &[StateOwner::User(persona), StateOwner::Agent],
        };
        owners
            .iter()
            .find_map(|o| self.values.get(&key(o.clone())).map(|v| v.clone()))
            .or_else(|| declared.and_then(|d| d.default_value.clone()))
    }

    /// The owner a write goes to: an explicit scope, else the declared one, else the user.
    pub fn owner_for(
        flow: &Flow,
        field: &str,
        scope: Option<StateScope>,
        persona: PersonaId,
    ) -> StateOwner {
        match scope.or_else(|| flow.state_field(field).map(|f| f.scope)) {
            Some(StateScope::Agent) => StateOwner::Agent,
            _ => StateOwner::User(persona),
        }
    }
}
