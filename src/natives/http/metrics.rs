//! The `http` native's metric names, their descriptions, and its handles (`send_request`
//! series, credential refreshes).

use metrics::{counter, histogram};

use crate::telemetry::flow_labels::FlowLabels;

pub const SEND_REQUESTS_TOTAL: &str = "switchboard_send_requests_total";
pub const SEND_REQUEST_DURATION_SECONDS: &str = "switchboard_send_request_duration_seconds";
pub const CREDENTIAL_REFRESHES_TOTAL: &str = "switchboard_credential_refreshes_total";

/// Registers the descriptions (called by the telemetry's `describe` at start, through the
/// component).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        SEND_REQUESTS_TOTAL,
        "send_request commands of http connectors carried out, by account and connector (the first limits.flow_series connectors; the rest _other), status class (2xx..5xx, none: no answer) and outcome (success, error_status, timeout, connect_error, egress_denied, redirect, failed)."
    );
    describe_counter!(
        CREDENTIAL_REFRESHES_TOTAL,
        "OAuth token refreshes of credentials, by reason (expiring, unauthorized, daily) and outcome (refreshed, raced, revoked, failed)."
    );
    describe_histogram!(
        SEND_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "How long send_request commands took, retries and redirects included, by account and connector (bounded as above)."
    );
}

/// The series of one http connector's `send_request`s: labelled `account` and `connector`
/// while `limits.flow_series` allows (the same bound as flows'), else `_other`.
pub struct SendRequestSeries {
    account: String,
    connector: String,
}

impl SendRequestSeries {
    pub fn of(account: &str, connector: &str) -> Self {
        let (account, connector) = FlowLabels::connectors().labels(account, connector);
        SendRequestSeries { account, connector }
    }

    /// A `send_request` ended with `status_class` and `outcome` after `took`.
    pub fn record(
        &self,
        status_class: &'static str,
        outcome: &'static str,
        took: std::time::Duration,
    ) {
        let (a, c) = (self.account.clone(), self.connector.clone());
        counter!(SEND_REQUESTS_TOTAL, "account" => a.clone(), "connector" => c.clone(), "status_class" => status_class, "outcome" => outcome)
            .increment(1);
        histogram!(SEND_REQUEST_DURATION_SECONDS, "account" => a, "connector" => c)
            .record(took.as_secs_f64());
    }
}

/// An OAuth credential's refresh for `reason` ended with `outcome`.
pub fn credential_refresh(reason: &'static str, outcome: &'static str) {
    counter!(CREDENTIAL_REFRESHES_TOTAL, "reason" => reason, "outcome" => outcome).increment(1);
}
