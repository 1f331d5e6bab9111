//! Header names and encodings of the NATS transport.

use async_nats::HeaderMap;

use crate::config::WireEncoding;
use crate::wire::envelope::Encoding;

pub const CONTENT_TYPE: &str = "Content-Type";
pub const MSG_ID: &str = "Nats-Msg-Id";
pub const REASON: &str = "Switchboard-Reason";
pub const DETAIL: &str = "Switchboard-Detail";
pub const KIND: &str = "Switchboard-Kind";
pub const SOURCE_SUBJECT: &str = "Switchboard-Source-Subject";
/// The daemon's MAC of an event it put on the events stream itself (`daemon_mac.rs`).
pub const DAEMON_MAC: &str = "Switchboard-Daemon-Mac";
/// On a daemon-signed event: it may repeat one a run before emitted (read only when the MAC
/// verifies).
pub const REDELIVERED: &str = "Switchboard-Redelivered";

pub fn encoding(e: WireEncoding) -> Encoding {
    match e {
        WireEncoding::Msgpack => Encoding::MessagePack,
        WireEncoding::Json => Encoding::Json,
    }
}

/// The encoding of an inbound message: its `Content-Type`, JSON when absent; `None` for a type
/// the daemon does not read.
pub fn inbound_encoding(headers: Option<&HeaderMap>) -> Option<Encoding> {
    match headers.and_then(|h| h.get(CONTENT_TYPE)) {
        None => Some(Encoding::Json),
        Some(v) => Encoding::from_content_type(v.as_str()),
    }
}

/// Headers for a message the daemon publishes.
pub fn outbound(encoding: Encoding, msg_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, encoding.content_type());
    h.insert(MSG_ID, msg_id);
    h
}

/// A header value on one line, at most 1 KiB.
pub fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 1024 {
        let mut cut = 1024;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
