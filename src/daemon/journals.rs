//! The engine's journals, kept in the store: session starts and ends, command acts issued to
//! adapters, flow state values. Each is written behind (off the hot path) and pruned by age;
//! acts and state are read back at start ([`restore`]).

use std::time::Duration;

use uuid::Uuid;

use crate::connectors::acts::{ActJournal, RecordedAct};
use crate::domain::{ConnectorKey, Idn, Name, PersonaId};
use crate::engine::Engine;
use crate::flow_instance::state::{StateEntry, StateJournal, StateOwner};
use crate::session::table::{SessionJournal, SessionView};
use crate::store::command_acts::ActRow;
use crate::store::flow_state::StateRow;
use crate::store::{SessionRow, Store, StoreError};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records sessions in the store.
pub struct Sessions(pub Store);

impl SessionJournal for Sessions {
    fn started(&self, s: &SessionView, external_id: Option<&str>) {
        self.0.session_started(
            SessionRow {
                id: s.id,
                account: s.account.to_string(),
                persona: s.persona.0,
                integration: s.integration.to_string(),
                connector: s.connector.to_string(),
                channel: s.channel.to_owned(),
                started_at: s.started_at.to_rfc3339(),
            },
            external_id.map(str::to_owned),
        );
    }

    fn ended(&self, id: Uuid, reason: &'static str) {
        self.0.session_ended(id, reason);
    }
}

/// Records command acts in the store; those older than `ttl` are pruned.
pub struct Acts {
    pub store: Store,
    pub ttl: Duration,
}

impl ActJournal for Acts {
    fn issued(&self, act: Uuid, persona: PersonaId, connector: &ConnectorKey) {
        let now = now_ms();
        self.store.act_issued(
            ActRow {
                act,
                account: connector.account.to_string(),
                integration: connector.integration.to_string(),
                connector: connector.connector.to_string(),
                persona: persona.0,
                issued_ms: now,
            },
            now - self.ttl.as_millis() as i64,
        );
    }
}

/// Records flow state values in the store; those older than `ttl` are pruned.
pub struct State {
    pub store: Store,
    pub ttl: Duration,
}

impl StateJournal for State {
    fn set(&self, e: &StateEntry) {
        self.store.state_set(
            StateRow {
                account: e.account.to_string(),
                agent: e.agent.to_string(),
                flow: e.flow.to_string(),
                field: e.field.to_string(),
                owner: match e.owner {
                    StateOwner::Agent => "agent".to_owned(),
                    StateOwner::User(p) => p.0.to_string(),
                },
                value: e.value.clone(),
                set_ms: e.set_at_ms,
            },
            now_ms() - self.ttl.as_millis() as i64,
        );
    }
}

/// Command acts and flow state as recorded, within their TTLs and capacities.
pub struct Recorded {
    acts: Vec<crate::store::command_acts::ActRow>,
    state: Vec<crate::store::flow_state::StateRow>,
    now_ms: i64,
}

impl Recorded {
    /// Reads them (blocking).
    pub fn read(
        store: &Store,
        acts: (Duration, usize),
        state: (Duration, usize),
    ) -> Result<Recorded, StoreError> {
        let now = now_ms();
        Ok(Recorded {
            acts: store.command_acts(now - acts.0.as_millis() as i64, acts.1)?,
            state: store.flow_state(now - state.0.as_millis() as i64, state.1)?,
            now_ms: now,
        })
    }

    /// Puts them back into the engine (rows that no longer parse are skipped).
    pub fn restore(self, engine: &Engine) {
        let now = self.now_ms;
        let recorded = self.acts.into_iter().filter_map(|r| {
            Some(RecordedAct {
                act: r.act,
                persona: PersonaId(r.persona),
                connector: ConnectorKey {
                    account: Idn::parse("account", &r.account).ok()?,
                    integration: Idn::parse("integration", &r.integration).ok()?,
                    connector: Idn::parse("connector", &r.connector).ok()?,
                },
                age: Duration::from_millis((now - r.issued_ms).max(0) as u64),
            })
        });
        engine.restore_acts(recorded);
        let entries = self.state.into_iter().filter_map(|r| {
            Some(StateEntry {
                account: Idn::parse("account", &r.account).ok()?,
                agent: Name::parse("agent", &r.agent).ok()?,
                flow: Name::parse("flow", &r.flow).ok()?,
                field: Idn::parse("field", &r.field).ok()?,
                owner: if r.owner == "agent" {
                    StateOwner::Agent
                } else {
                    StateOwner::User(PersonaId(Uuid::parse_str(&r.owner).ok()?))
                },
                value: r.value,
                set_at_ms: r.set_ms,
            })
        });
        engine.state().restore(entries);
    }
}
