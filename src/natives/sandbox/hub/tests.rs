use tokio::sync::mpsc::error::TryRecvError;

use super::*;

fn idn(s: &str) -> Idn {
    Idn::known(s)
}

fn persona(who: &str) -> PersonaId {
    PersonaId::derive(&idn("default"), &idn("sandbox"), who)
}

fn message(n: usize) -> ToPage {
    ToPage::Message {
        text: n.to_string(),
        command_act_id: String::new(),
    }
}

#[test]
fn a_page_that_stops_reading_loses_its_socket_and_the_others_get_every_message() {
    let hub = SandboxHub::default();
    let (account, chat) = (idn("default"), idn("chat"));
    let (_, mut slow) = hub.join(&account, &chat, persona("alice"));
    let (_, mut fast) = hub.join(&account, &chat, persona("alice"));
    for n in 0..=SOCKET_BUFFER {
        hub.send(&account, &chat, persona("alice"), message(n));
        assert_eq!(fast.try_recv(), Ok(message(n)), "the reading tab gets {n}");
    }
    assert_eq!(hub.sockets(), 1, "the slow tab's socket was let go");
    // The slow tab gets what its queue held, then its socket ends (the page sees it close).
    for n in 0..SOCKET_BUFFER {
        assert_eq!(slow.try_recv(), Ok(message(n)));
    }
    assert_eq!(slow.try_recv(), Err(TryRecvError::Disconnected));
    // The reading tab goes on.
    hub.send(&account, &chat, persona("alice"), message(0));
    assert_eq!(fast.try_recv(), Ok(message(0)));
}

#[test]
fn a_connector_stopped_or_deleted_closes_its_sockets_and_no_other() {
    /// Sockets on `default/chat` (two personas), `default/other` and `acct_b/chat`, then
    /// `change` to `default`'s `chat`: whether each socket is still open.
    fn check(change: ConnectorChange, open: [bool; 4]) {
        let hub = SandboxHub::default();
        let (default, acct_b) = (idn("default"), idn("acct_b"));
        let mut sockets = [
            hub.join(&default, &idn("chat"), persona("alice")).1,
            hub.join(&default, &idn("chat"), persona("bob")).1,
            hub.join(&default, &idn("other"), persona("alice")).1,
            hub.join(&acct_b, &idn("chat"), persona("alice")).1,
        ];
        let key = ConnectorKey::new(&default, &idn("sandbox"), &idn("chat"));
        hub.connector_changed(&key, change);
        let seen: Vec<bool> = sockets
            .iter_mut()
            .map(|rx| rx.try_recv() == Err(TryRecvError::Empty))
            .collect();
        assert_eq!(seen, open, "{change:?}");
        assert_eq!(
            hub.sockets(),
            open.iter().filter(|o| **o).count(),
            "{change:?}"
        );
    }
    check(ConnectorChange::Stopped, [false, false, true, true]);
    check(ConnectorChange::Deleted, [false, false, true, true]);
    check(ConnectorChange::Running, [true, true, true, true]);
}
