//! The server's words for how a session ended and why a connection was refused: the
//! `end_reason` of `session_end` records and the `reason` of `rejected` records and of the
//! metrics' `btest_rejected_total`. Owned by the server (issue 20: they lived in report.rs and
//! export/metrics.rs, which made report and server import each other); the outputs import
//! them from here. Must not: format records or count anything.

use crate::engine::StopReason;

/// The server's end-reason word for how a session's data phase ended: what the server can
/// tell (a client's FIN is `client_closed`, its reset `client_reset`).
pub fn end_reason(reason: &StopReason) -> &'static str {
    match reason {
        StopReason::PeerClosed => "client_closed",
        StopReason::PeerReset => "client_reset",
        // The server has no duration of its own; a "completed" server session cannot happen,
        // but if it did, the client's close is what ended it.
        StopReason::Completed => "client_closed",
        other => other.as_str(),
    }
}

/// Why a connection was refused before a session started; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The session limit was reached.
    Limit,
    /// The test command did not parse or asked for something unsupported.
    BadCommand,
    /// The client was too slow during the handshake.
    Timeout,
    /// Authentication failed.
    Auth,
    /// A secondary connection named a session token that does not exist.
    UnknownToken,
    /// Anything else (resources, I/O errors during the handshake).
    Other,
    /// `--max-handshakes-per-source` handshakes were already in progress from its source.
    SourceLimit,
    /// Its source is refused for a while after too many wrong logins.
    LoginBlocked,
    /// Its source started logins faster than `--logins-per-minute`.
    LoginRate,
    /// Its address is not admitted by `--allow` / `--deny`.
    Denied,
    /// A byte quota used up, or a per-user / per-source session limit (issue 10).
    Quota,
    /// The process is near its descriptor or thread limit (issue 18, server/capacity.rs).
    Capacity,
}

impl RejectReason {
    /// Every reason, in the order they are rendered.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Limit,
        RejectReason::BadCommand,
        RejectReason::Timeout,
        RejectReason::Auth,
        RejectReason::UnknownToken,
        RejectReason::Other,
        RejectReason::SourceLimit,
        RejectReason::LoginBlocked,
        RejectReason::LoginRate,
        RejectReason::Denied,
        RejectReason::Quota,
        RejectReason::Capacity,
    ];

    /// The label value: `limit`, `bad_command`, `timeout`, `auth`, `unknown_token`, `other`,
    /// `source_limit`, `login_blocked`, `login_rate`, `denied`, `quota`, `capacity`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Limit => "limit",
            RejectReason::BadCommand => "bad_command",
            RejectReason::Timeout => "timeout",
            RejectReason::Auth => "auth",
            RejectReason::UnknownToken => "unknown_token",
            RejectReason::Other => "other",
            RejectReason::SourceLimit => "source_limit",
            RejectReason::LoginBlocked => "login_blocked",
            RejectReason::LoginRate => "login_rate",
            RejectReason::Denied => "denied",
            RejectReason::Quota => "quota",
            RejectReason::Capacity => "capacity",
        }
    }

    /// Its slot in per-reason arrays (the metrics' counters).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
