//! Why a change to the daemon failed: each says whose fault and whether a retry can succeed.

use super::*;

/// Why a control-plane change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Flow(#[from] FlowRejected),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    LimitReached(#[from] limits::LimitReached),
    /// The shared control plane refused the change (another daemon's came first: 409) or did
    /// not answer.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// The flow comes from a flow file: deleting it over the API would not last.
    #[error("flow {flow} is defined by the file {}; change or remove the file", path.display())]
    DefinedByFile {
        flow: String,
        path: std::path::PathBuf,
    },
}

/// Why the flow files were not (re)loaded; the flows in force stay.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    File(#[from] flow_files::FlowFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {error}", dir.display())]
    Rejected {
        dir: std::path::PathBuf,
        error: FlowRejected,
    },
    /// An account's stored flows no longer pass (a catalog changed under them).
    #[error("stored flows of account {account}: {error}")]
    Stored { account: Idn, error: FlowRejected },
}

impl Blame for ReloadError {
    fn fault(&self) -> Fault {
        match self {
            ReloadError::Store(e) => e.fault(),
            // The operator's files.
            ReloadError::File(_) | ReloadError::Rejected { .. } => Fault::Caller,
            ReloadError::Stored { .. } => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ReloadError::Store(e) if e.retryable())
    }
}

impl Blame for ChangeError {
    fn fault(&self) -> Fault {
        match self {
            ChangeError::Control(e) => e.fault(),
            ChangeError::Flow(e) => e.fault(),
            ChangeError::Store(e) => e.fault(),
            ChangeError::LimitReached(e) => e.fault(),
            ChangeError::ControlPlane(e) => e.fault(),
            ChangeError::DefinedByFile { .. } => Fault::Caller,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ChangeError::Control(e) => e.retryable(),
            ChangeError::Flow(e) => e.retryable(),
            ChangeError::Store(e) => e.retryable(),
            ChangeError::LimitReached(e) => e.retryable(),
            ChangeError::ControlPlane(e) => e.retryable(),
            ChangeError::DefinedByFile { .. } => false,
        }
    }
}
