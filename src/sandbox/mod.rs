//! The sandbox integration, native: a chat page at `/sandbox`, a WebSocket per browser tab,
//! `user_message` events in and `send_message` commands out.

pub mod hub;
pub mod page;

pub use hub::SandboxHub;
