//! The `newo_chat` native's metric names, their descriptions, and its handles.

use metrics::{counter, gauge, Gauge};

pub const NEWO_CHAT_SOCKETS: &str = "switchboard_newo_chat_sockets";
pub const NEWO_CHAT_MESSAGES_PUSHED_TOTAL: &str = "switchboard_newo_chat_messages_pushed_total";
pub const NEWO_CHAT_MESSAGES_BUFFERED_TOTAL: &str = "switchboard_newo_chat_messages_buffered_total";
pub const NEWO_CHAT_MESSAGES_DROPPED_TOTAL: &str = "switchboard_newo_chat_messages_dropped_total";

/// Registers the descriptions (called by the telemetry's `describe` at start, through the
/// component).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        NEWO_CHAT_SOCKETS,
        "Web-chat (newo_chat) socket.io sockets connected, by connector."
    );
    describe_counter!(
        NEWO_CHAT_MESSAGES_PUSHED_TOTAL,
        "Web-chat commands emitted to an actor's sockets, live or from its buffer."
    );
    describe_counter!(
        NEWO_CHAT_MESSAGES_BUFFERED_TOTAL,
        "Web-chat commands buffered for an actor with no socket connected."
    );
    describe_counter!(
        NEWO_CHAT_MESSAGES_DROPPED_TOTAL,
        "Web-chat commands dropped, by reason (buffer_full, expired, connector_deleted, socket_full)."
    );
}

/// Web-chat (`newo_chat`) sockets connected to a connector (`<account>/<connector>`: series
/// bounded by the connectors `[limits]` allow).
pub fn newo_chat_sockets(connector: &str) -> Gauge {
    gauge!(NEWO_CHAT_SOCKETS, "connector" => connector.to_owned())
}

/// Web-chat messages emitted to an actor's sockets, `live` or from its `buffer`.
pub fn newo_chat_pushed(source: &'static str, n: u64) {
    counter!(NEWO_CHAT_MESSAGES_PUSHED_TOTAL, "source" => source).increment(n);
}

/// Web-chat messages buffered for an actor with no socket.
pub fn newo_chat_buffered(n: u64) {
    counter!(NEWO_CHAT_MESSAGES_BUFFERED_TOTAL).increment(n);
}

/// Web-chat messages dropped: `buffer_full`, `expired`, `connector_deleted`, `socket_full`.
pub fn newo_chat_dropped(reason: &'static str, n: u64) {
    counter!(NEWO_CHAT_MESSAGES_DROPPED_TOTAL, "reason" => reason).increment(n);
}
