//! The vocabulary of HTTP routes, shared by the daemon's API (`http/`) and the routes native
//! integrations own: errors and the one place their kinds become statuses ([`error`]), the
//! authenticated caller ([`caller`]), request bodies read within bounds ([`body`]), the error
//! responses operations document ([`responses`]).

pub mod body;
pub mod caller;
pub mod error;
pub mod responses;
