//! Whose fault a failure is, and whether trying again can help: every boundary error answers
//! both through [`Blame`], and those answers alone pick an HTTP status class
//! (`http/error.rs`) and a queue's terminate-or-redeliver (`transport/inbound.rs`).

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller's (a skill, an adapter, an HTTP client): fix the input.
    Caller,
    /// The daemon's own (full, stopping, a store that failed).
    Daemon,
    /// A peer's (a runner, an adapter, a remote API).
    Peer,
}

impl Fault {
    /// `caller`, `daemon` or `peer`, as result events and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Caller => "caller",
            Fault::Daemon => "daemon",
            Fault::Peer => "peer",
        }
    }
}

/// What every boundary error says of itself.
pub trait Blame {
    /// Whose fault it is.
    fn fault(&self) -> Fault;
    /// Whether the same request, unchanged, may succeed later.
    fn retryable(&self) -> bool;
}
