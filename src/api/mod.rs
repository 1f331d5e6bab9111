//! The vocabulary of HTTP routes, shared by the daemon's API (`http/`) and the routes native
//! integrations own: errors and the one place their kinds become statuses ([`error`]), their
//! documented responses ([`responses`]), the authenticated caller ([`caller`]), request bodies
//! read within bounds ([`body`]), settings decided by the listener ([`listener`]).

pub mod body;
pub mod caller;
pub mod error;
pub mod listener;
pub mod responses;
