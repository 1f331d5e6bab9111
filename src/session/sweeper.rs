//! The session sweeper actor: ends idle sessions every interval and emits `session_ended`
//! through the internal-events sink.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};
use tokio::time::Instant;

use super::table::SessionTable;
use crate::domain::{Event, Idn};
use crate::ingress::InternalEvents;

pub struct SessionSweeper {
    pub sessions: Arc<SessionTable>,
    pub events: InternalEvents,
    pub idle: Duration,
    pub interval: Duration,
}

impl Actor for SessionSweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, _| {
            let system = Idn::known("system");
            for ended in act.sessions.sweep(Instant::now(), act.idle) {
                let e = Event::for_persona(
                    ended.account,
                    system.clone(),
                    system.clone(),
                    Idn::known("session_ended"),
                    ended.persona,
                )
                .with_argument("sessionId", ended.id.to_string())
                .with_argument("integrationIdn", ended.integration.as_str())
                .with_argument("connectorIdn", ended.connector.as_str())
                .with_argument("reason", "idle");
                act.events.emit(e);
            }
        });
    }
}
