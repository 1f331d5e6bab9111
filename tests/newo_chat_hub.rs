//! The `newo_chat` hub driven directly, with real parts: socketioxide under hyper on
//! 127.0.0.1, the official Node `socket.io-client` (`driver.js`) as the web client, a real
//! SQLite store for the actor's buffer. A command pushed while the actor's buffer is being
//! delivered to its first socket (held) is answered only once the delivery emitted it (to how
//! many sockets), or, when every joining socket left meanwhile, once it was buffered: never
//! `sockets=1` ahead of it.
//!
//! Needs `node` and the client installed in `tests/fixtures/socketio/node_modules`:
//! `bash .ci/install-test-deps` does both.

mod common;

use std::sync::Arc;

use common::daemon::temp_dir;
use common::socketio::Node;
use common::wait::{eventually, within, PATIENCE};
use hyper_util::rt::TokioIo;
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;
use switchboard::domain::{ConnectorKey, Idn, PersonaId};
use switchboard::natives::newo_chat::hub::{ActorKey, Hub, Message, Push, Settled};
use switchboard::natives::newo_chat::store as chat_store;
use switchboard::store::Store;
use tokio::sync::mpsc;

/// Commands the buffer keeps per actor.
const KEEP: usize = 16;

/// A hub over a fresh store, a socket.io listener whose connections arrive on the answered
/// channel (their disconnects leave the hub), and its base URL.
async fn setup(name: &str) -> (Arc<Hub>, Store, mpsc::UnboundedReceiver<SocketRef>, String) {
    let dir = temp_dir(name);
    let store = Store::open(&dir.join("switchboard.db"), 64, 5000).expect("the store opens");
    store
        .migrate_component("newo_chat", chat_store::MIGRATIONS)
        .await
        .expect("newo_chat's tables");
    let hub = Arc::new(Hub::new(Some(store.clone()), KEEP));

    let (svc, io) = SocketIo::builder().build_svc();
    let (tx, sockets) = mpsc::unbounded_channel();
    let left = hub.clone();
    io.ns("/", move |s: SocketRef| {
        let (tx, hub) = (tx.clone(), left.clone());
        async move {
            s.on_disconnect(move |s: SocketRef| {
                let hub = hub.clone();
                async move { hub.leave(s.id) }
            });
            let _ = tx.send(s);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _io = io;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (hub, store, sockets, base)
}

fn actor() -> ActorKey {
    let key = ConnectorKey::new(
        &Idn::known("default"),
        &Idn::known("newo_chat"),
        &Idn::known("web"),
    );
    (key, PersonaId(uuid::Uuid::new_v4()))
}

fn message(text: &str) -> Message {
    Message {
        event: "send_message".into(),
        payload: json!({"arguments": [{"name": "text", "value": text}]}),
    }
}

/// Tab `tab` of `node` connected over WebSocket; answers its socket on the server.
async fn connect(
    node: &mut Node,
    sockets: &mut mpsc::UnboundedReceiver<SocketRef>,
    tab: &str,
    base: &str,
) -> SocketRef {
    node.connect(tab, base, json!({"transports": ["websocket"]}));
    assert_eq!(node.next(tab).await["type"], "connect");
    within("the server's socket", PATIENCE, sockets.recv())
        .await
        .expect("the listener runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_command_is_answered_once_the_buffer_s_delivery_emitted_it() {
    let (hub, store, mut sockets, base) = setup("chat-hub-held-emitted").await;
    let mut node = Node::start();
    let actor = actor();
    let socket = connect(&mut node, &mut sockets, "tab", &base).await;

    // The actor's first socket: its buffer's delivery starts; a command now is held behind it.
    let arrival = hub.arrive(socket, actor.clone());
    let Ok(Push::Held(mut settling)) = hub.push(&actor, message("held")) else {
        panic!("a command during the buffer's delivery is held");
    };
    assert!(
        settling.try_recv().is_err(),
        "nothing is answered before the delivery ran"
    );

    hub.settle(arrival).await;
    let settled = within("the held command's answer", PATIENCE, settling)
        .await
        .expect("answered")
        .expect("settled");
    assert_eq!(settled, Settled::Delivered(1));
    let events = node.events("tab", 1).await;
    assert_eq!(events[0]["event"], "send_message");
    assert_eq!(events[0]["data"]["arguments"][0]["value"], "held");
    let rows = chat_store::buffered(&store, &actor.0, actor.1).unwrap();
    assert!(rows.is_empty(), "nothing was buffered: {}", rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_command_whose_sockets_all_left_is_answered_as_buffered() {
    let (hub, store, mut sockets, base) = setup("chat-hub-held-buffered").await;
    let mut node = Node::start();
    let actor = actor();
    let socket = connect(&mut node, &mut sockets, "tab", &base).await;

    let arrival = hub.arrive(socket, actor.clone());
    let Ok(Push::Held(mut settling)) = hub.push(&actor, message("orphan")) else {
        panic!("a command during the buffer's delivery is held");
    };
    // The only joining socket goes before the delivery runs.
    node.close("tab");
    eventually("the socket left the hub", PATIENCE, || async {
        (hub.sockets(&actor) == 0).then_some(())
    })
    .await;
    assert!(
        settling.try_recv().is_err(),
        "nothing is answered before the delivery ran"
    );

    hub.settle(arrival).await;
    let settled = within("the held command's answer", PATIENCE, settling)
        .await
        .expect("answered")
        .expect("settled");
    assert_eq!(settled, Settled::Buffered(0));
    let rows = chat_store::buffered(&store, &actor.0, actor.1).unwrap();
    assert_eq!(rows.len(), 1, "the held command went to the buffer");
    assert_eq!(rows[0].event, "send_message");
    assert!(rows[0].payload.contains("orphan"), "{}", rows[0].payload);
}
