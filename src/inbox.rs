//! Batch inboxes: the hot-path queue of an actix actor. Events travel through a bounded tokio
//! channel instead of the actor's mailbox, and the actor drains it in batches from a future
//! running in its own context: no envelope is allocated per event, and an actor that stays
//! busy is not woken per event. Control messages (commands, reports, shutdown) keep using the
//! actix mailbox.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::Poll;

use actix::fut::ActorFuture;
use actix::{Actor, AsyncContext, Context};
use tokio::sync::mpsc;

/// Items taken from the inbox per batch.
pub const BATCH: usize = 256;
/// Work handled in one poll before the actor yields to the other actors of its arbiter.
pub const YIELD_AFTER: usize = 2048;

/// An actor with a batch inbox.
pub trait BatchInbox: Actor<Context = Context<Self>> {
    type Item: Unpin + 'static;

    /// The receiving end of the inbox.
    fn inbox(&mut self) -> &mut mpsc::Receiver<Self::Item>;

    /// Handles one batch, draining it; returns how much work that was (items, or the events
    /// they carry), which decides when the actor yields.
    fn handle_batch(&mut self, batch: &mut Vec<Self::Item>, ctx: &mut Context<Self>) -> usize;

    /// The inbox is closed and empty.
    fn inbox_closed(&mut self, ctx: &mut Context<Self>);

    /// Fires whatever else is due (timers); `true` if it did anything.
    fn poll_other(&mut self, _task: &mut std::task::Context<'_>, _ctx: &mut Context<Self>) -> bool {
        false
    }

    /// Starts draining the inbox. Call from `started`.
    fn start_pump(ctx: &mut Context<Self>) {
        ctx.spawn(Pump::<Self> {
            open: true,
            batch: Vec::new(),
            _actor: PhantomData,
        });
    }
}

/// Drains a [`BatchInbox`] inside its actor's context, until the inbox closes and nothing else
/// is pending.
struct Pump<A: BatchInbox> {
    open: bool,
    /// Empty until the first batch: an actor that never receives anything allocates nothing.
    batch: Vec<A::Item>,
    _actor: PhantomData<fn(A)>,
}

impl<A: BatchInbox> ActorFuture<A> for Pump<A> {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        let mut handled = 0;
        loop {
            let mut progress = false;
            if this.open {
                match act.inbox().poll_recv_many(task, &mut this.batch, BATCH) {
                    Poll::Ready(0) => {
                        this.open = false;
                        act.inbox_closed(ctx);
                    }
                    Poll::Ready(_) => {
                        handled += act.handle_batch(&mut this.batch, ctx);
                        this.batch.clear();
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            progress |= act.poll_other(task, ctx);
            if !progress {
                return Poll::Pending;
            }
            if handled >= YIELD_AFTER {
                task.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
