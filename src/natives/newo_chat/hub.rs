//! The sockets of each actor (a connector and a persona: every tab of one web client) and what
//! reaches them. A command for an actor is emitted at once to every socket it has, in the order
//! the command stage hands them over; an actor with none gets it in its buffer (the store's
//! `newo_chat_buffer`, bounded per actor), delivered when a socket connects again.
//!
//! **Order across a reconnect.** The decision to buffer and the buffer's write (queued in the
//! store writer's order) happen under the actor's map entry, as does a first socket's start of
//! delivery (`draining`): a drain waits for every write queued before it (`Store::flush`), reads
//! the buffer, emits it, then what arrived meanwhile (`held`), and only then lets the sockets
//! take commands live. Nothing is delivered out of order or stranded. Delivery is at least
//! once: a buffered command is forgotten after it was emitted to a socket. A held command
//! settles only once the drain emitted it (to how many sockets) or, every joining socket gone,
//! buffered it ([`Settled`]): its skill is told what became of it, never ahead of it.

use std::collections::VecDeque;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use serde_json::Value;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use tokio::sync::oneshot;

use super::store;
use crate::domain::{ConnectorKey, PersonaId};
use crate::store::{Store, StoreError};

/// Whose sockets: a connector and a persona.
pub type ActorKey = (ConnectorKey, PersonaId);

/// One message for an actor's sockets: a socket.io event and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: String,
    pub payload: Value,
}

/// What became of a message held behind a delivery of the actor's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Emitted to this many sockets, right after the buffer.
    Delivered(usize),
    /// Every joining socket left first: written to the buffer, crowding out this many older
    /// messages.
    Buffered(usize),
    /// Crowded out of the held messages (more than the buffer keeps) before the drain ended.
    Dropped,
}

/// The answer a held message waits for.
pub type Settling = oneshot::Receiver<Result<Settled, PushError>>;

/// What became of a message pushed to an actor.
pub enum Push<F> {
    /// Emitted to this many sockets.
    Delivered(usize),
    /// A socket is receiving the actor's buffer: it follows right after; resolves once the
    /// drain emitted or buffered it.
    Held(Settling),
    /// No socket: queued for the buffer; resolves once committed, with how many older
    /// messages it crowded out.
    Buffered(F),
}

/// Why a message could be neither emitted nor buffered.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("no socket is connected and the daemon keeps no store to buffer in")]
    NoStore,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the web chat stopped before the message reached a socket or the buffer")]
    Stopped,
}

#[derive(Default)]
struct Sockets {
    live: Vec<SocketRef>,
    /// Connected while the buffer is being delivered: live once it is.
    joining: Vec<SocketRef>,
    draining: bool,
    /// Pushed while the buffer is being delivered, with whom to tell what became of each.
    held: VecDeque<(Message, oneshot::Sender<Result<Settled, PushError>>)>,
}

impl Sockets {
    fn idle(&self) -> bool {
        self.live.is_empty() && self.joining.is_empty() && !self.draining && self.held.is_empty()
    }

    fn count(&self) -> usize {
        self.live.len() + self.joining.len()
    }
}

/// A socket that [`Hub::arrive`]d, for [`Hub::settle`].
#[must_use = "settle the arrival: it may have started the delivery of the actor's buffer"]
pub struct Arrival {
    actor: ActorKey,
    sid: Sid,
    connected: bool,
    drain: bool,
}

/// Every actor's sockets.
pub struct Hub {
    actors: DashMap<ActorKey, Sockets, FxBuildHasher>,
    sids: DashMap<Sid, ActorKey, FxBuildHasher>,
    store: Option<Store>,
    keep: usize,
}

/// Emits `m` to each socket of `sockets`; drops those closed, and those whose queue is full
/// (disconnected: a tab that cannot keep up reconnects and reads the buffer). Answers how many
/// took it.
fn emit_all(sockets: &mut Vec<SocketRef>, m: &Message) -> usize {
    let mut n = 0;
    sockets.retain(|s| match s.emit(&m.event, &m.payload) {
        Ok(()) => {
            n += 1;
            true
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            super::metrics::newo_chat_dropped("socket_full", 1);
            let _ = s.clone().disconnect();
            false
        }
        Err(SendError::Socket(SocketError::Closed)) => false,
        Err(SendError::Serialize(e)) => {
            tracing::error!(error = %e, "a web-chat payload did not serialize");
            true
        }
    });
    n
}

fn label(key: &ConnectorKey) -> String {
    format!("{}/{}", key.account, key.connector)
}

impl Hub {
    pub fn new(store: Option<Store>, keep: usize) -> Self {
        Hub {
            actors: DashMap::with_hasher(FxBuildHasher),
            sids: DashMap::with_hasher(FxBuildHasher),
            store,
            keep,
        }
    }

    /// Sockets the actor holds now.
    pub fn sockets(&self, actor: &ActorKey) -> usize {
        self.actors.get(actor).map_or(0, |s| s.count())
    }

    /// Emits `m` to the actor's sockets, or holds it behind a delivery under way, or buffers it.
    pub fn push(
        &self,
        actor: &ActorKey,
        m: Message,
    ) -> Result<Push<impl std::future::Future<Output = Result<usize, StoreError>>>, PushError> {
        let mut sockets = self.actors.entry(actor.clone()).or_default();
        if sockets.draining {
            let (settle, settling) = oneshot::channel();
            sockets.held.push_back((m, settle));
            if sockets.held.len() > self.keep {
                if let Some((_, crowded)) = sockets.held.pop_front() {
                    let _ = crowded.send(Ok(Settled::Dropped));
                }
                super::metrics::newo_chat_dropped("buffer_full", 1);
            }
            return Ok(Push::Held(settling));
        }
        let n = emit_all(&mut sockets.live, &m);
        if n > 0 {
            super::metrics::newo_chat_pushed("live", 1);
            return Ok(Push::Delivered(n));
        }
        // Queued under the entry: a drain starting after this flushes it first.
        let queued = match &self.store {
            Some(store) => store::buffer(
                store,
                &actor.0,
                actor.1,
                m.event,
                m.payload.to_string(),
                self.keep,
            )
            .map_err(PushError::Store),
            None => Err(PushError::NoStore),
        };
        drop(sockets);
        self.actors.remove_if(actor, |_, s| s.idle());
        Ok(Push::Buffered(queued?))
    }

    /// A socket of `actor` connected (its connect checks passed): it takes commands from now on,
    /// after what the actor's buffer holds when it is the actor's first.
    pub async fn join(&self, socket: SocketRef, actor: ActorKey) {
        let arrival = self.arrive(socket, actor);
        self.settle(arrival).await;
    }

    /// The first half of [`Hub::join`]: the socket is the actor's from now on; when it is the
    /// actor's first, the buffer's delivery starts (commands pushed from now on are held behind
    /// it) and [`Hub::settle`] carries it out.
    pub fn arrive(&self, socket: SocketRef, actor: ActorKey) -> Arrival {
        let sid = socket.id;
        self.sids.insert(sid, actor.clone());
        let connected = socket.connected();
        super::metrics::newo_chat_sockets(&label(&actor.0)).increment(1.0);
        let mut sockets = self.actors.entry(actor.clone()).or_default();
        let drain = if sockets.draining {
            sockets.joining.push(socket);
            false
        } else if !sockets.live.is_empty() || self.store.is_none() {
            sockets.live.push(socket);
            false
        } else {
            sockets.draining = true;
            sockets.joining.push(socket);
            true
        };
        drop(sockets);
        Arrival {
            actor,
            sid,
            connected,
            drain,
        }
    }

    /// The second half of [`Hub::join`]: delivers the buffer when the arrival started its
    /// delivery; a socket gone before it joined leaves.
    pub async fn settle(&self, arrival: Arrival) {
        if arrival.drain {
            self.drain(&arrival.actor).await;
        }
        // Gone before it joined: its disconnect found nothing to leave.
        if !arrival.connected {
            self.leave(arrival.sid);
        }
    }

    /// Delivers the actor's buffer to its joining sockets, then what was held meanwhile.
    async fn drain(&self, actor: &ActorKey) {
        let rows = match self.store.clone() {
            Some(store) => {
                let (key, persona) = (actor.0.clone(), actor.1);
                let read = async move {
                    store.flush().await?;
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || store::buffered(&s, &key, persona))
                        .await
                        .map_err(|_| StoreError::Closed)?
                };
                match read.await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "a web-chat buffer was not read: delivered on a later connection");
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        let mut orphans = Vec::new();
        {
            let Some(mut sockets) = self.actors.get_mut(actor) else {
                return;
            };
            let mut last = None;
            for row in &rows {
                let m = Message {
                    event: row.event.clone(),
                    payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
                };
                if emit_all(&mut sockets.joining, &m) > 0 {
                    super::metrics::newo_chat_pushed("buffer", 1);
                    last = Some(row.seq);
                }
            }
            if let (Some(seq), Some(store)) = (last, &self.store) {
                store::delivered(store, &actor.0, actor.1, seq);
            }
            while let Some((m, settle)) = sockets.held.pop_front() {
                let n = emit_all(&mut sockets.joining, &m);
                if n > 0 {
                    super::metrics::newo_chat_pushed("live", 1);
                    let _ = settle.send(Ok(Settled::Delivered(n)));
                } else {
                    orphans.push((m, settle));
                }
            }
            let joined = std::mem::take(&mut sockets.joining);
            sockets.live.extend(joined);
            sockets.draining = false;
        }
        self.actors.remove_if(actor, |_, s| s.idle());
        // Every socket left while the buffer was delivered: what was held is pushed again, in
        // order (to the buffer, or to a socket that came meanwhile), then each is told.
        let mut pushed = Vec::with_capacity(orphans.len());
        for (m, settle) in orphans {
            pushed.push((self.push(actor, m), settle));
        }
        for (push, settle) in pushed {
            let settled = match push {
                Ok(Push::Delivered(n)) => Ok(Settled::Delivered(n)),
                Ok(Push::Held(settling)) => settling.await.unwrap_or(Err(PushError::Stopped)),
                Ok(Push::Buffered(written)) => written
                    .await
                    .map(Settled::Buffered)
                    .map_err(PushError::Store),
                Err(e) => Err(e),
            };
            let _ = settle.send(settled);
        }
    }

    /// A socket disconnected.
    pub fn leave(&self, sid: Sid) {
        let Some((_, actor)) = self.sids.remove(&sid) else {
            return;
        };
        super::metrics::newo_chat_sockets(&label(&actor.0)).decrement(1.0);
        if let Some(mut sockets) = self.actors.get_mut(&actor) {
            sockets.live.retain(|s| s.id != sid);
            sockets.joining.retain(|s| s.id != sid);
        }
        self.actors.remove_if(&actor, |_, s| s.idle());
    }

    /// Closes every socket of `connector` (stopped or deleted).
    pub fn close(&self, connector: &ConnectorKey) {
        let sockets: Vec<SocketRef> = self
            .actors
            .iter()
            .filter(|e| &e.key().0 == connector)
            .flat_map(|e| {
                e.value()
                    .live
                    .iter()
                    .chain(e.value().joining.iter())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        for s in sockets {
            let _ = s.disconnect();
        }
    }
}
