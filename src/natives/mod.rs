//! Native integrations the engine carries out itself, each a [`crate::commands::NativeIntegration`]
//! in its own module, registered for its integration idn where the engine or the daemon is
//! wired. `sandbox/` is the other one (it also serves a page).

pub mod http;
pub mod system;
pub mod timers;
