//! Sessions of user personas on connectors, and the sweeper that ends idle ones.

pub mod clock;
pub mod seen;
pub mod sweeper;
pub mod table;

pub use table::{SessionTable, SessionView};
