//! The sandbox integration, native: a chat page at `/sandbox`, a WebSocket per browser tab,
//! `user_message` events in (through the durable intake) and `send_message` commands out; a
//! page with a token opens its socket with a single-use ticket. Its routes, its sockets
//! ([`hub`]) and its config section ([`SandboxConfig`]) live here.

pub mod access;
pub mod config;
pub mod hub;
pub mod page;
pub mod routes;
pub mod ticket;

pub use config::SandboxConfig;
pub use hub::SandboxHub;

use actix_web::web;

use crate::natives::component::{Built, Component, NativeContext};
use crate::natives::section::{Invalid, NativeSection, Section, Sections};

/// Its `[sandbox]` section, for its registration line.
pub const SECTION: Section = Section::of::<SandboxConfig>();

impl NativeSection for SandboxConfig {
    const KEY: &'static str = "sandbox";

    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// The sandbox component, with its `[sandbox]` section.
pub struct SandboxComponent(pub SandboxConfig);

/// The sandbox component of its section, for the registration list.
pub fn component(sections: &Sections) -> Box<dyn Component> {
    Box::new(SandboxComponent(sections.get()))
}

/// Whether `[sandbox] demo_runner` asks the daemon for its built-in demo runner.
pub fn demo_runner(sections: &Sections) -> bool {
    sections.get::<SandboxConfig>().demo_runner
}

impl Component for SandboxComponent {
    fn idn(&self) -> &'static str {
        "sandbox"
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let hub = SandboxHub::new();
        let surface = web::Data::new(routes::Surface {
            hub: hub.clone(),
            tickets: ticket::Tickets::default(),
            config: self.0,
            directory: cx.directory.clone(),
            persona_key: cx.persona_key,
        });
        Built::executor(hub).with_routes(move |cfg| {
            cfg.app_data(surface.clone());
            routes::register(cfg);
        })
    }
}
