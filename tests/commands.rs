//! Commands from skills: validation refusals answered with `result_error`, order per
//! conversation, results routed back to the same persona by `command_act_id`, flow state
//! through `set_state`, and `send_system_event`.

mod common;

use std::collections::BTreeSet;

use common::{eventually, Harness, PATIENCE};
use switchboard::admission::delivery::{Settle, Settlement};
use switchboard::domain::{Command, Idn, Target};
use switchboard::skill_runner::Outcome;
use switchboard::wire::envelope::Limits;
use switchboard::wire::invocation::ResultWire;

const FLOW: &str = r#"
runner: {kind: in_process, name: manual}
state_fields:
  - {idn: reply_skill, scope: user, default_value: DefaultReply}
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: telegram}
  - {idn: result_error, skill_idn: OnError}
  - {idn: result_success, skill_idn: OnSuccess}
  - {idn: ping, skill_selector: skill_idn_from_state, state_idn: reply_skill, integration_idn: system}
  - {idn: pong, skill_selector: skill_idn_from_state, state_idn: unset_field, integration_idn: system}
  - {idn: wake_up, skill_idn: Woken, integration_idn: system, connector_idn: system}
"#;

async fn setup() -> Harness {
    let h = Harness::start();
    h.connector("telegram", "bot");
    h.connector("http", "api");
    h.flow("Agent", "Main", FLOW).await;
    h
}

/// `persona`'s value of the flow `Agent/Main`'s `reply_skill` state field (its default when unset).
fn reply_skill(h: &Harness, persona: switchboard::domain::PersonaId) -> Option<String> {
    let flow = h
        .engine
        .dispatcher()
        .index()
        .flow("default", "Agent", "Main")
        .unwrap()
        .clone();
    h.engine
        .state()
        .get(&flow.flow, &Idn::known("reply_skill"), persona)
}

fn cmd(h: &Harness, integration: &str, connector: &str, command: &str) -> Command {
    Command::new(
        h.account.clone(),
        Idn::known(integration),
        Idn::known(connector),
        Idn::known(command),
    )
}

#[actix_rt::test]
async fn invalid_commands_are_refused_with_result_error_and_never_sent() {
    let mut h = setup().await;
    let alice = h.persona("telegram", "alice");
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "Talk");
    reply.finish(
        Outcome::Completed,
        vec![
            cmd(&h, "telegram", "nobot", "send_message").with_argument("text", "x"),
            cmd(&h, "http", "api", "send_message").with_argument("text", "x"),
            cmd(&h, "http", "api", "send_request").with_argument("method", "GET"),
            cmd(&h, "telegram", "bot", "send_message").with_argument("text", "hello"),
        ],
    );
    let sent = h.relay.recv().await.unwrap();
    assert_eq!(sent.command.arguments.get("text"), Some("hello"));
    assert_eq!(sent.persona, alice);
    let mut errors = BTreeSet::new();
    for _ in 0..3 {
        let (inv, reply) = h.next_manual().await;
        assert_eq!(inv.skill.as_str(), "OnError");
        assert_eq!(inv.persona, alice, "answers go to the same persona");
        let e = &inv.event.event;
        let act = e
            .command_act_id
            .expect("result events carry command_act_id");
        assert_eq!(
            e.arguments.get("command_act_id"),
            Some(act.to_string().as_str())
        );
        errors.insert((
            e.integration.to_string(),
            e.arguments.get("error").unwrap().to_owned(),
        ));
        reply.finish(Outcome::Completed, vec![]);
    }
    assert_eq!(
        errors,
        BTreeSet::from([
            (
                "http".to_owned(),
                "command send_request needs argument \"url\"".to_owned()
            ),
            (
                "http".to_owned(),
                "integration http does not accept command \"send_message\"".to_owned()
            ),
            (
                "telegram".to_owned(),
                "unknown connector telegram/nobot".to_owned()
            ),
        ])
    );
    assert_eq!(h.dead_letter_codes(), vec!["command_refused"; 3]);
    assert!(h.relay.try_recv().is_err(), "only the valid command left");
}

#[actix_rt::test]
async fn each_command_of_a_runner_answer_is_judged_on_its_own() {
    let mut h = setup().await;
    let alice = h.persona("telegram", "alice");
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    // As a runner sends it: the second command lacks its connector, the third has a field no
    // command has; the first and the last are fine.
    let answer: ResultWire = serde_json::from_str(
        r#"{"v": 1, "outcome": "completed", "commands": [
            {"v": 1, "integration_idn": "telegram", "connector_idn": "bot", "command_idn": "send_message",
             "arguments": {"text": "first"}},
            {"v": 1, "integration_idn": "telegram", "command_idn": "send_message", "arguments": {"text": "lost"}},
            {"v": 1, "integration_idn": "telegram", "connector_idn": "bot", "command_idn": "send_message",
             "colour": "red"},
            {"v": 1, "integration_idn": "telegram", "connector_idn": "bot", "command_idn": "send_message",
             "arguments": {"text": "last"}}
        ]}"#,
    )
    .unwrap();
    let answer = answer.into_domain(Limits::default()).unwrap();
    assert_eq!(
        answer.first_defect().unwrap().field,
        "commands[1].connector_idn"
    );
    reply.finish(Outcome::Completed, answer.commands);
    for text in ["first", "last"] {
        let sent = h.relay.recv().await.unwrap();
        assert_eq!(sent.command.arguments.get("text"), Some(text));
        assert_eq!(sent.persona, alice);
    }
    let mut errors = BTreeSet::new();
    for _ in 0..2 {
        let (inv, reply) = h.next_manual().await;
        assert_eq!(inv.skill.as_str(), "OnError");
        assert_eq!(inv.persona, alice, "answers go to the same persona");
        let e = &inv.event.event;
        assert!(e.command_act_id.is_some());
        errors.insert((
            format!("{}/{}", e.integration, e.connector),
            e.arguments.get("field").unwrap().to_owned(),
            e.arguments.get("error").unwrap().to_owned(),
        ));
        reply.finish(Outcome::Completed, vec![]);
    }
    assert_eq!(
        errors,
        BTreeSet::from([
            (
                // Without its connector there is no scope of its own to answer in.
                "system/system".to_owned(),
                "commands[1].connector_idn".to_owned(),
                "malformed command: commands[1].connector_idn: required".to_owned()
            ),
            (
                "telegram/bot".to_owned(),
                "commands[2].colour".to_owned(),
                "malformed command: commands[2].colour: unknown field".to_owned()
            ),
        ])
    );
    assert_eq!(h.dead_letter_codes(), vec!["command_refused"; 2]);
    assert!(h.relay.try_recv().is_err(), "only the valid commands left");
}

#[actix_rt::test]
async fn commands_to_one_conversation_leave_in_order() {
    let mut h = setup().await;
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    let mut n = 0;
    for _ in 0..5 {
        let batch = (0..10)
            .map(|_| {
                n += 1;
                cmd(&h, "telegram", "bot", "send_message").with_argument("text", n.to_string())
            })
            .collect();
        reply.commands(batch);
    }
    let last = (0..10)
        .map(|_| {
            n += 1;
            cmd(&h, "telegram", "bot", "send_message").with_argument("text", n.to_string())
        })
        .collect();
    reply.finish(Outcome::Completed, last);
    for want in 1..=60 {
        let got = h.relay.recv().await.unwrap();
        assert_eq!(
            got.command.arguments.get("text"),
            Some(want.to_string().as_str())
        );
    }
}

#[actix_rt::test]
async fn results_come_back_to_the_same_persona_by_command_act_id() {
    let mut h = setup().await;
    let alice = h.persona("telegram", "alice");
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    reply.finish(
        Outcome::Completed,
        vec![cmd(&h, "telegram", "bot", "send_message").with_argument("text", "hi")],
    );
    let out = h.relay.recv().await.unwrap();
    // The adapter reports success naming only the act.
    let mut ok = h.event("telegram", "bot", "result_success", "ignored");
    ok.target = Target::ByCommandAct;
    ok.command_act_id = Some(out.act);
    h.submit(ok).await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "OnSuccess");
    assert_eq!(inv.persona, alice);
    reply.finish(Outcome::Completed, vec![]);
    // An act nobody issued, with no actor: refused into the dead letters.
    let mut unknown = h.event("telegram", "bot", "result_success", "ignored");
    unknown.target = Target::ByCommandAct;
    unknown.command_act_id = Some(uuid::Uuid::now_v7());
    assert_eq!(
        h.send(unknown).await.unwrap(),
        switchboard::admission::delivery::Settlement::Done
    );
    assert_eq!(h.dead_letter_codes(), vec!["unknown_command_act"]);
}

#[actix_rt::test]
async fn skill_from_state_uses_default_then_set_state_then_refuses_when_unset() {
    let mut h = setup().await;
    let bob = h.persona("system", "bob");
    h.submit(h.event("system", "system", "ping", "bob")).await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(
        inv.skill.as_str(),
        "DefaultReply",
        "no value yet: the default"
    );
    reply.finish(
        Outcome::Completed,
        vec![cmd(&h, "system", "system", "set_state")
            .with_argument("idn", "reply_skill")
            .with_argument("value", "CustomReply")],
    );
    eventually("the state field set", PATIENCE, || {
        let set = reply_skill(&h, bob);
        std::future::ready((set.as_deref() == Some("CustomReply")).then_some(()))
    })
    .await;
    h.submit(h.event("system", "system", "ping", "bob")).await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "CustomReply");
    reply.finish(Outcome::Completed, vec![]);
    // Another persona still sees the default: the field is per user.
    h.submit(h.event("system", "system", "ping", "carol")).await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "DefaultReply");
    reply.finish(Outcome::Completed, vec![]);
    // A field with no value and no default: no skill, a dead letter naming the field.
    h.send(h.event("system", "system", "pong", "bob"))
        .await
        .unwrap();
    let dead = h.dead.all();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.code(), "no_skill");
    assert!(dead[0].detail.contains("unset_field"), "{}", dead[0].detail);
}

#[actix_rt::test]
async fn send_system_event_reaches_the_same_persona() {
    let mut h = setup().await;
    let alice = h.persona("telegram", "alice");
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    reply.finish(
        Outcome::Completed,
        vec![cmd(&h, "system", "system", "send_system_event")
            .with_argument("eventIdn", "wake_up")
            .with_argument("why", "because")],
    );
    let (inv, _) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "Woken");
    assert_eq!(inv.persona, alice);
    assert_eq!(inv.event.event.arguments.get("why"), Some("because"));
    assert_eq!(inv.event.event.arguments.get("eventIdn"), None);
}

/// A runner that streams commands and finishes inside `invoke`.
struct Chatty;

impl switchboard::skill_runner::SkillRunner for Chatty {
    fn invoke(
        &self,
        inv: switchboard::skill_runner::Invocation,
        reply: switchboard::skill_runner::Reply,
        _handoff: switchboard::skill_runner::Handoff,
    ) {
        let say = |t: &str| {
            Command::new(
                inv.account.clone(),
                Idn::known("telegram"),
                Idn::known("bot"),
                Idn::known("send_message"),
            )
            .with_argument("text", t)
        };
        reply.commands(vec![say("1"), say("2")]);
        reply.commands(vec![say("3")]);
        reply.finish(Outcome::Completed, vec![say("4")]);
    }
}

#[actix_rt::test]
async fn a_runner_answering_inside_invoke_keeps_the_order_of_its_commands() {
    let mut h = Harness::builder()
        .default_runner(std::sync::Arc::new(Chatty))
        .start();
    h.connector("telegram", "bot");
    h.flow(
        "Agent",
        "Main",
        "events: [{idn: user_message, skill_idn: Talk, integration_idn: telegram}]",
    )
    .await;
    let e = h.event("telegram", "bot", "user_message", "a");
    h.engine.ingress().submit(e, None).await.unwrap();
    for want in ["1", "2", "3", "4"] {
        let got = h.relay.recv().await.unwrap();
        assert_eq!(got.command.arguments.get("text"), Some(want));
    }
    assert_eq!(h.engine.flow_instances(), 1);
}

/// A native integration for the test: records what it carries out, answers with an extra
/// argument, refuses a command whose `timerName` is `bad`.
struct Recording(std::sync::Mutex<Vec<(String, uuid::Uuid, String)>>);

impl switchboard::commands::NativeIntegration for Recording {
    fn execute(
        &self,
        c: switchboard::commands::NativeCommand<'_>,
    ) -> Result<switchboard::commands::Answered, switchboard::commands::CommandRefusal> {
        let name = c.command.arguments.get("timerName").unwrap_or_default();
        if name == "bad" {
            return Err(switchboard::commands::CommandRefusal::InvalidArgument {
                argument: "timerName".into(),
                reason: "not this one".into(),
            });
        }
        self.0.lock().unwrap().push((
            c.command.command.to_string(),
            c.persona.0,
            c.flow.map(|f| f.flow.flow.to_string()).unwrap_or_default(),
        ));
        let mut extra = switchboard::domain::Arguments::default();
        extra.push("nextFireAt", "2026-01-01T00:00:00Z");
        Ok(switchboard::commands::Answered::Now(extra))
    }
}

#[actix_rt::test]
async fn a_native_integration_plugs_in_by_registration_and_answers_through_the_sink() {
    let native = std::sync::Arc::new(Recording(Default::default()));
    let mut h = Harness::builder()
        .native("program_timer", native.clone())
        .start();
    h.connector("telegram", "bot");
    h.connector("program_timer", "timers");
    h.flow("Agent", "Main", FLOW).await;
    let alice = h.persona("telegram", "alice");
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    reply.finish(
        Outcome::Completed,
        vec![
            cmd(&h, "program_timer", "timers", "set_timer").with_argument("timerName", "t1"),
            cmd(&h, "program_timer", "timers", "set_timer").with_argument("timerName", "bad"),
        ],
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (inv, reply) = h.next_manual().await;
        assert_eq!(inv.persona, alice, "answers go to the same persona");
        let e = &inv.event.event;
        answers.push((
            inv.skill.to_string(),
            e.integration.to_string(),
            e.arguments.get("nextFireAt").map(str::to_owned),
            e.arguments.get("field").map(str::to_owned),
        ));
        reply.finish(Outcome::Completed, vec![]);
    }
    answers.sort();
    assert_eq!(
        answers,
        vec![
            (
                "OnError".to_owned(),
                "program_timer".to_owned(),
                None,
                Some("timerName".to_owned())
            ),
            (
                "OnSuccess".to_owned(),
                "program_timer".to_owned(),
                Some("2026-01-01T00:00:00Z".to_owned()),
                None
            ),
        ]
    );
    let done = native.0.lock().unwrap().clone();
    assert_eq!(
        done,
        vec![("set_timer".to_owned(), alice.0, "Main".to_owned())],
        "carried out once, with the persona and the invoking flow"
    );
    assert!(
        h.relay.try_recv().is_err(),
        "a native command never reaches egress"
    );
}

/// The event's source as a partition of the events stream: revoked once another daemon took
/// the partition; records how the delivery settled.
struct Partition {
    revoked: std::sync::atomic::AtomicBool,
    settled: tokio::sync::mpsc::UnboundedSender<Settlement>,
}

/// The [`Partition`] as the delivery's source.
struct Source(std::sync::Arc<Partition>);

impl Settle for Source {
    fn settle(&self, s: Settlement) {
        let _ = self.0.settled.send(s);
    }

    fn revoked(&self) -> bool {
        self.0.revoked.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[actix_rt::test]
async fn an_invocation_fenced_while_it_ran_carries_out_none_of_its_commands() {
    let mut h = setup().await;
    let bob = h.persona("system", "bob");
    let (settled, mut settlements) = tokio::sync::mpsc::unbounded_channel();
    let partition = std::sync::Arc::new(Partition {
        revoked: Default::default(),
        settled,
    });
    h.engine
        .ingress()
        .submit(
            h.event("system", "system", "ping", "bob"),
            Some(Box::new(Source(partition.clone()))),
        )
        .await
        .unwrap();
    let (_, reply) = h.next_manual().await;
    // The daemon was stopped past its lease while the runner worked: the partition moved.
    partition
        .revoked
        .store(true, std::sync::atomic::Ordering::Release);
    reply.finish(
        Outcome::Completed,
        vec![
            cmd(&h, "system", "system", "set_state")
                .with_argument("idn", "reply_skill")
                .with_argument("value", "CustomReply"),
            cmd(&h, "telegram", "bot", "send_message").with_argument("text", "stale"),
        ],
    );
    // Given up for the partition's new owner, which invokes it again.
    assert_eq!(settlements.recv().await, Some(Settlement::Redeliver));
    assert_eq!(
        reply_skill(&h, bob).as_deref(),
        Some("DefaultReply"),
        "no state written by a fenced invocation"
    );
    assert!(h.relay.try_recv().is_err(), "nothing sent");

    // Not fenced: the same commands are carried out, and the event settles done.
    let done = h.submit(h.event("system", "system", "ping", "bob")).await;
    let (_, reply) = h.next_manual().await;
    reply.finish(
        Outcome::Completed,
        vec![cmd(&h, "telegram", "bot", "send_message").with_argument("text", "fresh")],
    );
    let out = h.relay.recv().await.unwrap();
    assert_eq!(out.command.arguments.get("text"), Some("fresh"));
    drop(out);
    assert_eq!(done.await.unwrap(), Settlement::Done);
}
