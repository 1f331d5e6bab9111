//! The sandbox integration, native: a chat page at `/sandbox`, a WebSocket per browser tab,
//! `user_message` events in and `send_message` commands out; a page with a token opens its
//! socket with a single-use ticket.

pub mod hub;
pub mod page;
pub mod ticket;

pub use hub::SandboxHub;
