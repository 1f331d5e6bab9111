//! Native integrations the daemon carries out itself: each a [`component::Component`] in its
//! own folder (`natives/<idn>/`: commands, routes, storage, config), listed once where the
//! daemon starts.

pub mod api;
pub mod component;
pub mod http;
pub mod newo_chat;
pub mod program_timer;
pub mod sandbox;
pub mod section;
pub mod system;
