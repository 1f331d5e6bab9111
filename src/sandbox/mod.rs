//! The sandbox integration, native: a chat page at `/sandbox`, a WebSocket per browser tab,
//! `user_message` events in and `send_message` commands out; a page with a token opens its
//! socket with a single-use ticket.

pub mod hub;
pub mod page;
pub mod ticket;

pub use hub::SandboxHub;

use std::sync::Arc;

use crate::natives::component::{Built, Component, NativeContext};

/// The sandbox component around a hub the daemon also holds (its page and sockets are served by
/// `http/sandbox.rs` until they move here).
pub struct SandboxComponent(pub Arc<SandboxHub>);

impl Component for SandboxComponent {
    fn idn(&self) -> &'static str {
        "sandbox"
    }

    fn build(self: Box<Self>, _cx: &NativeContext) -> Built {
        Built::executor(self.0)
    }
}
