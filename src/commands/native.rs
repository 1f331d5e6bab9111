//! The plug of native integrations: the integrations the daemon carries out itself (`system`,
//! `sandbox`, and next `program_timer`, `http`, `api`, `newo_chat`). Each implements
//! [`NativeIntegration`] in its own module and is registered once for its integration idn
//! ([`Natives::with`]); the command stage hands it the validated commands addressed to its
//! connectors, and it emits events through the internal-events sink it was built with. A native
//! integration that is not registered does not exist here: its commands are refused at once,
//! naming the integration.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::refusal::CommandRefusal;
use crate::domain::{Arguments, Command, Idn, PersonaId};
use crate::routing::index::FlowRoute;

/// A validated command for a native integration, with where it comes from.
pub struct NativeCommand<'a> {
    /// Names account, integration, connector, command and arguments; `invocation_id` when a
    /// skill sent it.
    pub command: &'a Command,
    /// The act id its result events carry (`command_act_id`).
    pub act: Uuid,
    /// The user persona the command acts for.
    pub persona: PersonaId,
    /// The invoking flow, when a skill sent it.
    pub flow: Option<&'a FlowRoute>,
}

/// A native integration.
pub trait NativeIntegration: Send + Sync + 'static {
    /// Carries out `command`; must not block (hand slow work to a task). `Ok` carries extra
    /// arguments for the `result_success` event, when the integration reports one; an `Err` is
    /// answered with `result_error` naming the argument at fault.
    fn execute(&self, command: NativeCommand<'_>) -> Result<Arguments, CommandRefusal>;
}

/// The registered native integrations, by integration idn.
#[derive(Clone, Default)]
pub struct Natives(FxHashMap<Idn, Arc<dyn NativeIntegration>>);

impl Natives {
    /// Registers `native` for `integration`.
    pub fn with(mut self, integration: &str, native: Arc<dyn NativeIntegration>) -> Self {
        self.0.insert(Idn::known(integration), native);
        self
    }

    pub fn get(&self, integration: &Idn) -> Option<&Arc<dyn NativeIntegration>> {
        self.0.get(integration)
    }

    /// Whether `integration` has a handler here.
    pub fn has(&self, integration: &Idn) -> bool {
        self.0.contains_key(integration)
    }
}
