//! Reasons a native names for its own dead letters, without an edit here: a [`NativeReason`]
//! the native declares as a constant (its integration and a code), registered when it is built
//! (`Component::dead_letter_reasons`), stored, counted and shown as its code. The codes are
//! constants in natives' code, so metric labels stay bounded; a stored code reads back once the
//! native that declares it is registered.

use std::sync::RwLock;

/// A native's own dead-letter reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NativeReason {
    /// The integration that declares it (`api`).
    pub integration: &'static str,
    /// Its stable code (`webhook_refused`): the stored form, the metric label, the API's.
    pub code: &'static str,
}

impl NativeReason {
    pub const fn new(integration: &'static str, code: &'static str) -> Self {
        NativeReason { integration, code }
    }
}

/// The reasons of the natives built in this process.
static REGISTERED: RwLock<Vec<NativeReason>> = RwLock::new(Vec::new());

/// Registers natives' reasons (as they are built; again is a no-op). A code the daemon's own
/// reasons or another native's already use is a programming error: it panics naming it.
pub fn register(reasons: &[NativeReason]) {
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    for reason in reasons {
        assert!(
            super::DeadLetterReason::ALL
                .iter()
                .all(|own| own.code() != reason.code),
            "dead-letter reason {:?} of {} is the daemon's",
            reason.code,
            reason.integration
        );
        match registered.iter().find(|r| r.code == reason.code) {
            Some(r) if r == reason => {}
            Some(r) => panic!(
                "dead-letter reason {:?} of {} is already {}'s",
                reason.code, reason.integration, r.integration
            ),
            None => registered.push(*reason),
        }
    }
}

/// The registered reason of `code`.
pub(super) fn of_code(code: &str) -> Option<NativeReason> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    registered.iter().find(|r| r.code == code).copied()
}
