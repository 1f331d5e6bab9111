//! Skill runners: the implementations of the runner contract ([`crate::invocation`]).
//! [`webhook`] runners POST invocations to a URL; queue runners (in `transport/`) publish them;
//! tests and the demo use [`in_process`] and [`demo`]. [`RunnerRegistry`] resolves a flow's
//! runner spec into one of them.

pub mod demo;
pub mod in_process;
pub mod pending;
pub mod webhook;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::domain::RunnerSpec;
pub use crate::invocation::{
    Handoff, Invocation, InvocationSession, NoRunner, Outcome, Reply, RunnerResolver, SkillRunner,
};

/// Resolves `default`, named in-process runners and, given a factory, webhook runners;
/// refuses kinds it was not given.
#[derive(Clone)]
pub struct RunnerRegistry {
    default: Arc<dyn SkillRunner>,
    named: FxHashMap<String, Arc<dyn SkillRunner>>,
    demo: Option<Arc<dyn SkillRunner>>,
    webhooks: Option<webhook::WebhookRunners>,
}

impl RunnerRegistry {
    pub fn new(default: Arc<dyn SkillRunner>) -> Self {
        RunnerRegistry {
            default,
            named: FxHashMap::default(),
            demo: None,
            webhooks: None,
        }
    }

    pub fn with_named(mut self, name: &str, runner: Arc<dyn SkillRunner>) -> Self {
        self.named.insert(name.to_owned(), runner);
        self
    }

    pub fn with_demo(mut self, runner: Arc<dyn SkillRunner>) -> Self {
        self.demo = Some(runner);
        self
    }

    /// Resolves `{kind: webhook}` runners with `factory`.
    pub fn with_webhooks(mut self, factory: webhook::WebhookRunners) -> Self {
        self.webhooks = Some(factory);
        self
    }

    /// The webhook factory, if webhook runners are enabled.
    pub fn webhooks(&self) -> Option<&webhook::WebhookRunners> {
        self.webhooks.as_ref()
    }
}

impl RunnerResolver for RunnerRegistry {
    fn resolve(&self, spec: &RunnerSpec) -> Result<Arc<dyn SkillRunner>, NoRunner> {
        match spec {
            RunnerSpec::Default => Ok(self.default.clone()),
            RunnerSpec::InProcess { name } => self
                .named
                .get(name)
                .cloned()
                .ok_or_else(|| NoRunner(format!("no in-process runner named {name:?}"))),
            RunnerSpec::Demo => self
                .demo
                .clone()
                .ok_or_else(|| NoRunner("the demo runner is not enabled".to_owned())),
            RunnerSpec::Webhook {
                url,
                timeout,
                max_attempts,
                retry_for,
            } => self
                .webhooks
                .as_ref()
                .map(|w| w.runner(url, *timeout, *max_attempts, *retry_for))
                .ok_or_else(|| NoRunner("webhook runners are not enabled".to_owned())),
            other => Err(NoRunner(format!(
                "runner kind {} is not available here",
                other.kind()
            ))),
        }
    }
}
