//! The flow table actor: owns the flows, resolves their runners, and rebuilds the
//! subscription index when they change. Large rebuilds run on a blocking thread; the finished index is
//! swapped in atomically, so dispatch never sees a half-built index and never waits.
//! Changes are answered once the index that contains them is live.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message, ResponseActFuture, WrapFuture};

use super::dispatch::LiveIndex;
use super::index::{FlowId, FlowRoute, SubscriptionIndex};
use crate::domain::{Flow, Idn, Name};
use crate::fault::{Blame, Fault};
use crate::invocation::RunnerResolver;
use crate::telemetry::handles::{EngineMetrics, FlowMetrics};

/// Indexes up to this many subscriptions are built inline: it takes well under a millisecond.
const INLINE_BUILD_LIMIT: usize = 20_000;

/// A refused flow change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FlowRejected {
    pub field: String,
    pub reason: String,
}

impl Blame for FlowRejected {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// A subscription that can never match is refused, naming it: its integration must exist and
/// emit the event (an open integration emits any). A connector that does not exist yet is
/// accepted: connectors may be created later.
pub fn check_subscriptions(flow: &Flow) -> Result<(), FlowRejected> {
    let catalog = crate::catalog::Catalog::builtin();
    for (k, sub) in flow.subscriptions.iter().enumerate() {
        let Some(i) = &sub.integration else { continue };
        let integration = catalog.get(i.as_str()).ok_or_else(|| FlowRejected {
            field: format!("events[{k}].integration_idn"),
            reason: format!("unknown integration {i:?}"),
        })?;
        if !integration.emits(sub.event.as_str()) {
            return Err(FlowRejected {
                field: format!("events[{k}].idn"),
                reason: format!("integration {i} does not emit {:?}", sub.event.as_str()),
            });
        }
    }
    Ok(())
}

/// Adds or replaces one flow.
#[derive(Message)]
#[rtype(result = "Result<(), FlowRejected>")]
pub struct PutFlow(pub Flow);

/// Removes one flow; `false` if it did not exist.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DeleteFlow {
    pub account: Idn,
    pub agent: Name,
    pub flow: Name,
}

/// Replaces every flow of `account` at once (a reload): all or nothing.
#[derive(Message)]
#[rtype(result = "Result<(), FlowRejected>")]
pub struct ReplaceFlows {
    pub account: Idn,
    pub flows: Vec<Flow>,
}

type FlowKey = (Idn, Name, Name);

pub struct FlowTable {
    index: Arc<LiveIndex>,
    resolver: Arc<dyn RunnerResolver>,
    metrics: Arc<EngineMetrics>,
    default_timeout: Duration,
    flows: BTreeMap<FlowKey, Arc<FlowRoute>>,
    ids: BTreeMap<FlowKey, FlowId>,
    next_id: u32,
}

impl FlowTable {
    pub fn new(
        index: Arc<LiveIndex>,
        resolver: Arc<dyn RunnerResolver>,
        metrics: Arc<EngineMetrics>,
        default_timeout: Duration,
    ) -> Self {
        FlowTable {
            index,
            resolver,
            metrics,
            default_timeout,
            flows: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn route_of(&mut self, flow: Flow) -> Result<(FlowKey, Arc<FlowRoute>), FlowRejected> {
        check_subscriptions(&flow)?;
        let runner = self
            .resolver
            .resolve(&flow.runner)
            .map_err(|e| FlowRejected {
                field: "runner".into(),
                reason: e.0,
            })?;
        let key = (flow.account.clone(), flow.agent.clone(), flow.flow.clone());
        let next = &mut self.next_id;
        let id = *self.ids.entry(key.clone()).or_insert_with(|| {
            *next += 1;
            FlowId(*next)
        });
        let timeout = flow.invocation_timeout.unwrap_or(self.default_timeout);
        let route = Arc::new(FlowRoute::new(id, flow, runner, timeout));
        Ok((key, route))
    }

    /// Removes the metric series of the flows named in `gone` that no account has any more.
    fn forget_series(&self, gone: impl IntoIterator<Item = (Name, Name)>) {
        for (agent, flow) in gone {
            let live = self.flows.keys().any(|(_, a, f)| *a == agent && *f == flow);
            if !live {
                FlowMetrics::forget(agent.as_str(), flow.as_str());
            }
        }
    }

    /// Builds the index of the current flows and swaps it in; resolves when it is live.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        let flows: Vec<Arc<FlowRoute>> = self.flows.values().cloned().collect();
        let count: usize = flows.iter().map(|f| f.flow.subscriptions.len()).sum();
        let live = self.index.clone();
        let metrics = self.metrics.clone();
        let build = move || {
            let started = std::time::Instant::now();
            let index = SubscriptionIndex::build(&flows);
            metrics
                .index_subscriptions
                .set(index.subscription_count() as f64);
            live.swap(Arc::new(index));
            metrics
                .index_rebuild
                .record(started.elapsed().as_secs_f64());
        };
        if count <= INLINE_BUILD_LIMIT {
            build();
        } else {
            // Hold the flow table's mailbox until the index is live, so replies stay truthful.
            ctx.wait(
                async move {
                    if let Err(e) = tokio::task::spawn_blocking(build).await {
                        tracing::error!(error = %e, "index rebuild panicked; the old index stays");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Actor for FlowTable {
    type Context = Context<Self>;
}

impl Handler<PutFlow> for FlowTable {
    type Result = ResponseActFuture<Self, Result<(), FlowRejected>>;

    fn handle(&mut self, msg: PutFlow, ctx: &mut Context<Self>) -> Self::Result {
        match self.route_of(msg.0) {
            Ok((key, route)) => {
                self.flows.insert(key, route);
                self.rebuild(ctx);
                Box::pin(actix::fut::ready(Ok(())))
            }
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
        }
    }
}

impl Handler<DeleteFlow> for FlowTable {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: DeleteFlow, ctx: &mut Context<Self>) -> Self::Result {
        let removed = self
            .flows
            .remove(&(msg.account, msg.agent.clone(), msg.flow.clone()))
            .is_some();
        if removed {
            self.forget_series([(msg.agent, msg.flow)]);
            self.rebuild(ctx);
        }
        // Replies run after any `ctx.wait` of the rebuild: the answer follows the swap.
        Box::pin(actix::fut::ready(removed))
    }
}

impl Handler<ReplaceFlows> for FlowTable {
    type Result = ResponseActFuture<Self, Result<(), FlowRejected>>;

    fn handle(&mut self, msg: ReplaceFlows, ctx: &mut Context<Self>) -> Self::Result {
        let mut routes = Vec::with_capacity(msg.flows.len());
        for (i, flow) in msg.flows.into_iter().enumerate() {
            if flow.account != msg.account {
                return Box::pin(actix::fut::ready(Err(FlowRejected {
                    field: format!("flows[{i}].account"),
                    reason: "differs from the account being replaced".into(),
                })));
            }
            match self.route_of(flow) {
                Ok(r) => routes.push(r),
                Err(e) => {
                    return Box::pin(actix::fut::ready(Err(FlowRejected {
                        field: format!("flows[{i}].{}", e.field),
                        reason: e.reason,
                    })))
                }
            }
        }
        let before: Vec<(Name, Name)> = self
            .flows
            .keys()
            .filter(|(a, _, _)| *a == msg.account)
            .map(|(_, agent, flow)| (agent.clone(), flow.clone()))
            .collect();
        self.flows.retain(|(a, _, _), _| *a != msg.account);
        self.flows.extend(routes);
        self.forget_series(before);
        self.rebuild(ctx);
        Box::pin(actix::fut::ready(Ok(())))
    }
}
