//! The record model: every output record (client `start`, `interval`, `summary`, `error`;
//! server `session_start`, `session_end`, `auth_failure`, `rejected`) is defined once here, as
//! an ordered list of typed fields with a one-line meaning, and rendered from that one value as
//! JSON, CSV cells and syslog `key=value` text. Text output reads its values from the same
//! record (report.rs).
//!
//! Why (issue 8): each field used to be spelled out in four places and docs/output.md had
//! fallen nine fields behind. Now [`schema`] is the only list: a record built with a field the
//! schema does not have, or in another order, fails the tests, and a test checks that
//! docs/output.md documents exactly the schema's fields (and the `end_reason` words).
//! Issue 20: every field is a constant in [`field`], and writers and readers name it
//! (`r.f64(&field::TX_AVG_BPS)`): a misspelt or renamed field no longer compiles, where a
//! string key used to read a silent 0 or "-".
//!
//! Pure: no I/O, no clocks. Must not: decide what a field's value is (report.rs does).

use std::fmt::Write as _;

/// Version of the record layout. Fields are only added within a version; a field that changes
/// meaning bumps it (docs/output.md says so).
pub const SCHEMA: u32 = 1;

/// The kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client: the test is about to start.
    Start,
    /// Client: one report interval.
    Interval,
    /// Client: the whole test.
    Summary,
    /// Client: the test could not run or failed.
    Error,
    /// Fleet: one target's result (the last of its attempts).
    Target,
    /// Server: a session passed its handshake.
    SessionStart,
    /// Server: a session that started has ended.
    SessionEnd,
    /// Server: a client failed to log in.
    AuthFailure,
    /// Server: a handshake that got past the command was refused before the session started.
    Rejected,
    /// Speed test: one phase (idle, download, upload, bidirectional, cooldown).
    #[cfg(feature = "speedtest")]
    Phase,
    /// Speed test: the overall figures, after the phases.
    #[cfg(feature = "speedtest")]
    SpeedTest,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: &'static [Kind] = &[
        Kind::Start,
        Kind::Interval,
        Kind::Summary,
        Kind::Error,
        Kind::Target,
        Kind::SessionStart,
        Kind::SessionEnd,
        Kind::AuthFailure,
        Kind::Rejected,
        #[cfg(feature = "speedtest")]
        Kind::Phase,
        #[cfg(feature = "speedtest")]
        Kind::SpeedTest,
    ];

    /// The `type` value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Interval => "interval",
            Kind::Summary => "summary",
            Kind::Error => "error",
            Kind::Target => "target",
            Kind::SessionStart => "session_start",
            Kind::SessionEnd => "session_end",
            Kind::AuthFailure => "auth_failure",
            Kind::Rejected => "rejected",
            #[cfg(feature = "speedtest")]
            Kind::Phase => "phase",
            #[cfg(feature = "speedtest")]
            Kind::SpeedTest => "speed_test",
        }
    }
}

/// The JSON type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Text.
    Str,
    /// A non-negative integer.
    Int,
    /// A number that may have a fraction.
    Num,
    /// true / false.
    Bool,
    /// A nested object or array (JSON only; left out of CSV and syslog).
    Nested,
}

impl Ty {
    /// The word docs/output.md uses.
    pub fn word(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Num => "number",
            Ty::Bool => "bool",
            Ty::Nested => "object",
        }
    }
}

/// One field of a record's schema. Every field is a constant in [`field`]; writers push and
/// readers read through it (`r.f64(&field::TX_AVG_BPS)`), never through a bare string.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON key, CSV column, syslog key.
    pub key: &'static str,
    /// Its type.
    pub ty: Ty,
    /// May be null.
    pub nullable: bool,
    /// What it means, for docs/output.md. Only the tests read it: left out of the binary,
    /// where its few kilobytes of text would count against the 1 MiB router budget.
    #[cfg(test)]
    pub doc: &'static str,
}

#[cfg_attr(not(test), allow(unused_variables))]
const fn f(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        nullable: false,
        #[cfg(test)]
        doc,
    }
}

#[cfg_attr(not(test), allow(unused_variables))]
const fn n(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        nullable: true,
        #[cfg(test)]
        doc,
    }
}

impl Field {
    /// The same field, null allowed in this kind.
    const fn or_null(self) -> Field {
        Field {
            nullable: true,
            ..self
        }
    }

    /// The same field, never null in this kind.
    const fn required(self) -> Field {
        Field {
            nullable: false,
            ..self
        }
    }

    /// The same field with this kind's own meaning (docs/output.md's wording for it).
    #[cfg_attr(not(test), allow(unused_variables))]
    const fn meaning(self, doc: &'static str) -> Field {
        #[cfg(test)]
        return Field { doc, ..self };
        #[cfg(not(test))]
        self
    }
}

/// Every field of every record, once: readers and writers name these, so a misspelt or
/// renamed field is a compile error (issue 20). A kind's table (below) lists the ones it
/// has, with its own meaning or nullability where they differ from the first use here.
pub mod field {
    use super::Field;
    use super::Ty::{Bool, Int, Nested, Num, Str};
    use super::{f, n};

    pub const SERVER: Field = f("server", Str, "the server as given (`host:port`)");
    pub const PROTOCOL: Field = f("protocol", Str, "`tcp` or `udp`");
    pub const DIRECTION: Field = f(
        "direction",
        Str,
        "`transmit`, `receive` or `both`, seen from the client",
    );
    pub const CONNECTIONS: Field = f("connections", Int, "connections asked for");
    pub const ELAPSED_S: Field = f(
        "elapsed_s",
        Num,
        "time since the test started, at the end of this interval",
    );
    pub const INTERVAL_S: Field = f(
        "interval_s",
        Num,
        "length of this interval (the last one may be shorter)",
    );
    pub const TX_CURRENT_BPS: Field = f("tx_current_bps", Num, "what we sent in this interval");
    pub const TX_10S_AVG_BPS: Field = f("tx_10s_avg_bps", Num, "what we sent over the last 10 s");
    pub const TX_TOTAL_AVG_BPS: Field = f("tx_total_avg_bps", Num, "what we sent since the start");
    pub const RX_CURRENT_BPS: Field = f("rx_current_bps", Num, "what we received in this interval");
    pub const RX_10S_AVG_BPS: Field =
        f("rx_10s_avg_bps", Num, "what we received over the last 10 s");
    pub const RX_TOTAL_AVG_BPS: Field =
        f("rx_total_avg_bps", Num, "what we received since the start");
    pub const TX_BYTES: Field = f("tx_bytes", Int, "bytes sent in this interval");
    pub const RX_BYTES: Field = f(
        "rx_bytes",
        Int,
        "data bytes received in this interval (statuses are not data)",
    );
    pub const LOST_PACKETS: Field = f(
        "lost_packets",
        Int,
        "UDP datagrams missing from the sequence in this interval, net of late arrivals",
    );
    pub const REMOTE_RX_BYTES: Field = f(
        "remote_rx_bytes",
        Int,
        "what the peer's statuses that arrived in this interval said it received",
    );
    pub const LOCAL_CPU: Field = n("local_cpu", Num, "this machine's CPU %");
    pub const REMOTE_CPU: Field = n("remote_cpu", Num, "the peer's CPU % from its last status");
    pub const LOST_WIRE: Field = f(
        "lost_wire",
        Int,
        "lost_packets minus lost_host: lost on the way",
    );
    pub const LOST_HOST: Field = n("lost_host", Int, "UDP datagrams this host's receive sockets dropped, at most lost_packets; with GRO (udp_rx_io gro) an estimate: the kernel counts dropped buffers of up to 64 datagrams, scaled by the buffer size datagrams arrived in (null: unknown, or TCP)");
    pub const REORDERED: Field = f("reordered", Int, "UDP datagrams that arrived out of order");
    pub const DUPLICATES: Field = f("duplicates", Int, "UDP datagrams that arrived twice");
    pub const TX_TARGET_BPS: Field = f(
        "tx_target_bps",
        Int,
        "the rate our senders aim at now (0 = unlimited)",
    );
    pub const SENDERS: Field = f("senders", Nested, "pacing audit per TX thread: `thread`, `target_bps`, `achieved_bps`, `gap_p50_us`, `gap_p99_us` (between send calls), `burst_avg`, `burst_max` (datagrams per send call) (gaps and bursts: paced senders only)");
    pub const TCP: Field = n("tcp", Nested, "TCP_INFO: `retransmits` (this interval), `total` and `per_connection` objects with `rtt_us`, `rttvar_us`, `cwnd`, `mss`, `retransmits_total`, `delivery_rate_bps`");
    pub const THREAD_CPU: Field = f(
        "thread_cpu",
        Nested,
        "busiest thread per role, % of one core: `tx`, `rx`, `status`",
    );
    pub const RTT_SENT: Field = n(
        "rtt_sent",
        Int,
        "latency probes sent in this interval (null: no probe ran)",
    );
    pub const RTT_LOST: Field = n(
        "rtt_lost",
        Int,
        "latency probes whose reply did not come within 1 s, counted when their time ran out",
    );
    pub const RTT_MIN_MS: Field = n(
        "rtt_min_ms",
        Num,
        "lowest probe round-trip time of the replies in this interval",
    );
    pub const RTT_AVG_MS: Field = n(
        "rtt_avg_ms",
        Num,
        "mean probe round-trip time in this interval",
    );
    pub const RTT_P50_MS: Field = n(
        "rtt_p50_ms",
        Num,
        "median probe round-trip time in this interval",
    );
    pub const RTT_P90_MS: Field = n(
        "rtt_p90_ms",
        Num,
        "90th percentile probe round-trip time in this interval",
    );
    pub const RTT_MAX_MS: Field = n(
        "rtt_max_ms",
        Num,
        "highest probe round-trip time in this interval",
    );
    pub const RTT_JITTER_MS: Field = n(
        "rtt_jitter_ms",
        Num,
        "RFC 3550 interarrival jitter of the probe round-trip times, at the end of this interval",
    );
    pub const TCP_RTT_MS: Field = n(
        "tcp_rtt_ms",
        Num,
        "TCP: the kernel's smoothed round-trip time (TCP_INFO), mean over the connections",
    );
    pub const TX_LOSS_PCT: Field = n("tx_loss_pct", Num, "UDP upload: share of what we sent that the peer's statuses did not count, over the seconds the statuses that arrived in this interval cover (null: TCP, no upload, or no status arrived)");
    pub const RX_LOSS_PCT: Field = n("rx_loss_pct", Num, "UDP download: lost_packets / (datagrams received + lost_packets) in this interval, in % (null: TCP, or no download)");
    pub const TX_DELIVERED_BPS: Field = n("tx_delivered_bps", Num, "UDP upload: what the peer's statuses that arrived in this interval say it received, per second they cover (null as tx_loss_pct)");
    pub const TIMESTAMP: Field = f("timestamp", Str, "when the test started, RFC 3339 UTC");
    pub const DURATION_S: Field = f(
        "duration_s",
        Num,
        "length of the data phase (the sum of the intervals' lengths)",
    );
    pub const TX_AVG_BPS: Field = f("tx_avg_bps", Num, "average send rate");
    pub const RX_AVG_BPS: Field = f("rx_avg_bps", Num, "average receive rate");
    pub const LOCAL_CPU_AVG: Field = n("local_cpu_avg", Num, "average CPU % of this machine");
    pub const REMOTE_CPU_AVG: Field = n("remote_cpu_avg", Num, "average CPU % the peer reported");
    pub const AUTH: Field = f("auth", Str, "`none`, `md5` or `ecsrp5`");
    pub const END_REASON: Field = f(
        "end_reason",
        Str,
        "`completed`, `interrupted`, `peer_closed`, `peer_reset`, `control_timeout`, `error`",
    );
    pub const THREAD_CPU_MAX: Field = f(
        "thread_cpu_max",
        Nested,
        "highest per-role thread CPU of any interval: `tx`, `rx`, `status`",
    );
    pub const REMOTE_RX_SATURATED: Field = f(
        "remote_rx_saturated",
        Bool,
        "a peer status carried the 32-bit maximum (it received more than 4 GiB in a second)",
    );
    pub const REMOTE_RX_LOWER_BOUND: Field = f("remote_rx_lower_bound", Bool, "the peer's per-second 32-bit field could not carry what we sent (above ~34 Gbit/s), or saturated: remote_rx_bytes is a lower bound");
    pub const REMOTE_RX_SUSPECT: Field = f("remote_rx_suspect", Bool, "TCP: over the seconds its statuses cover (not a last partial second it never reported, nor what we sent after a Ctrl-C), the peer reported far less than TCP delivered (a counter that wraps at 2^32, or one that counts something else): remote_rx_bytes is not loss");
    pub const VERDICT: Field = n(
        "verdict",
        Str,
        "a role thread was saturated: this host, not the link, limited the rate",
    );
    pub const UDP_TX_IO: Field = n("udp_tx_io", Str, "UDP: how we sent: `gso` (segmentation offload), `mmsg` (sendmmsg), `single` (one datagram per call), after any fallback");
    pub const UDP_RX_IO: Field = n(
        "udp_rx_io",
        Str,
        "UDP: how we received: `gro`, `mmsg` (recvmmsg), `single`",
    );
    pub const SERVER_SENT_BPS: Field = n("server_sent_bps", Num, "UDP with the server sending at a rate we asked: what it sent (bit/s; received plus lost, from the sequence numbers) when under 90 % of what we asked, i.e. the server capped it (its --max-rate or a rate= limit) or could not send faster; null otherwise");
    pub const RTT_METHOD: Field = n("rtt_method", Str, "how latency was probed: `echo` (the btest server's UDP echo), `icmp` (ping socket), `icmp-raw` (raw socket, root); null: no probe");
    pub const IDLE_RTT_MIN_MS: Field = n(
        "idle_rtt_min_ms",
        Num,
        "lowest probe round-trip time in the idle second before the load",
    );
    pub const IDLE_RTT_AVG_MS: Field = n("idle_rtt_avg_ms", Num, "mean idle round-trip time");
    pub const IDLE_RTT_P50_MS: Field = n("idle_rtt_p50_ms", Num, "median idle round-trip time");
    pub const IDLE_RTT_P90_MS: Field = n(
        "idle_rtt_p90_ms",
        Num,
        "90th percentile idle round-trip time",
    );
    pub const IDLE_RTT_MAX_MS: Field = n("idle_rtt_max_ms", Num, "highest idle round-trip time");
    pub const IDLE_JITTER_MS: Field = n(
        "idle_jitter_ms",
        Num,
        "RFC 3550 jitter over the idle probes",
    );
    pub const LOADED_RTT_MIN_MS: Field = n(
        "loaded_rtt_min_ms",
        Num,
        "lowest probe round-trip time during the load",
    );
    pub const LOADED_RTT_AVG_MS: Field = n(
        "loaded_rtt_avg_ms",
        Num,
        "mean round-trip time during the load",
    );
    pub const LOADED_RTT_P50_MS: Field = n(
        "loaded_rtt_p50_ms",
        Num,
        "median round-trip time during the load",
    );
    pub const LOADED_RTT_P90_MS: Field = n(
        "loaded_rtt_p90_ms",
        Num,
        "90th percentile round-trip time during the load",
    );
    pub const LOADED_RTT_MAX_MS: Field = n(
        "loaded_rtt_max_ms",
        Num,
        "highest round-trip time during the load",
    );
    pub const LOADED_JITTER_MS: Field = n(
        "loaded_jitter_ms",
        Num,
        "RFC 3550 jitter over the probes during the load",
    );
    pub const BUFFERBLOAT_MS: Field = n(
        "bufferbloat_ms",
        Num,
        "loaded median round-trip time minus the idle median: the delay the load added (queueing)",
    );
    pub const FOREIGN_DATAGRAMS: Field = f("foreign_datagrams", Int, "UDP datagrams received that were not the server's: from another sender or port, of another size, or with a sequence far from the test's (not counted as data, loss or reorder)");
    pub const NAME: Field = f("name", Str, "the target's name in the fleet file");
    pub const OK: Field = f("ok", Bool, "the last attempt succeeded");
    pub const ATTEMPTS: Field = f("attempts", Int, "attempts made (1 + retries used)");
    pub const UP_BPS: Field = n(
        "up_bps",
        Num,
        "average rate we sent (client to server); null when we did not send",
    );
    pub const DOWN_BPS: Field = n(
        "down_bps",
        Num,
        "average rate we received (server to client); null when we did not receive",
    );
    pub const UP_LOSS_PCT: Field = n("up_loss_pct", Num, "UDP: share of what we sent that the server's statuses did not count (the summary's `tx_loss_pct`)");
    pub const DOWN_LOSS_PCT: Field = n("down_loss_pct", Num, "UDP: share of the server's datagrams missing from the sequence (the summary's `rx_loss_pct`)");
    pub const IDLE_RTT_MS: Field = n(
        "idle_rtt_ms",
        Num,
        "median probe round-trip time before the load",
    );
    pub const LOADED_RTT_MS: Field = n(
        "loaded_rtt_ms",
        Num,
        "median probe round-trip time during the load",
    );
    pub const ERROR: Field = n(
        "error",
        Str,
        "why the last attempt failed (null when it succeeded)",
    );
    pub const PHASE: Field = n("phase", Str, "the phase the last attempt failed in");
    pub const MESSAGE: Field = f(
        "message",
        Str,
        "what failed and what to try, as printed on stderr",
    );
    pub const PEER: Field = f("peer", Str, "client address");
    pub const USER: Field = n("user", Str, "authenticated user");
    pub const UDP_PORT: Field = n("udp_port", Int, "the server's UDP port");
    pub const REMOTE_TX_SPEED_BPS: Field = f(
        "remote_tx_speed_bps",
        Int,
        "the rate the client asked the server to send at (0 = unlimited)",
    );
    pub const LOCAL_TX_SPEED_BPS: Field = f(
        "local_tx_speed_bps",
        Int,
        "the rate the client said it sends at",
    );
    pub const TX_SIZE: Field = f("tx_size", Int, "chunk or datagram size from the command");
    pub const REASON: Field = f(
        "reason",
        Str,
        "`limit` (session limit), `timeout`, `bad_command`, `unknown_token`, `quota` (a byte quota used up, or a per-user / per-source session limit), `capacity` (the server is near its descriptor or thread limit), `other`",
    );
    // --- speed test (issue 22; docs/field.md says how each figure is computed) ---
    pub const START_S: Field = f(
        "start_s",
        Num,
        "when the phase started, seconds after the first phase started",
    );
    pub const RX_BPS: Field = n(
        "rx_bps",
        Num,
        "what we received, bit/s (null: idle, cooldown, or a phase where the server did not send)",
    );
    pub const TX_BPS: Field = n(
        "tx_bps",
        Num,
        "what we sent, bit/s (null: idle, cooldown, or a phase where we did not send)",
    );
    pub const LATENCY: Field = n("latency", Nested, "the probe class's figures over the phase's steady state (a load phase's first second, its ramp, is counted in `sent`/`lost` only): `count`, `low_ms`, `high_ms`, `mean_ms`, `iqm_ms`, `jitter_ms`, `p50_ms`, `p90_ms`, `p99_ms`, `trimmed95_ms` (null when no reply), `sent`, `lost`; null: no probe ran");
    pub const INCREASE_MS: Field = n("increase_ms", Num, "this phase's mean latency minus the idle phase's (null: the idle phase, or no idle figures)");
    pub const OWD: Field = n("owd", Nested, "one-way delay: `up_iqm_ms`, `down_iqm_ms`, `up_increase_ms`, `down_increase_ms`; null: the server does not stamp its echo replies");
    pub const CLASSES: Field = f(
        "classes",
        Nested,
        "one object per --probe-dscp class: `dscp`, `name`, `latency` (as above), `increase_ms`",
    );
    pub const RPM: Field = n("rpm", Num, "round trips per minute: (foreign + self) / 2, each 60000 / trimmed mean 95 of its RTTs (null: no RTT)");
    pub const PROBE_INTERVAL_MS: Field =
        f("probe_interval_ms", Num, "the probe interval in force, ms");
    pub const GRADE: Field = n("grade", Str, "bufferbloat grade of `grade_increase_ms`: `A+` < 5 ms, `A` < 30, `B` < 60, `C` < 200, `D` < 400, `F` (null: no idle or loaded latency)");
    pub const GRADE_INCREASE_MS: Field = n(
        "grade_increase_ms",
        Num,
        "(download increase + upload increase) / 2 over the idle mean, or the one that ran",
    );
    pub const RPM_FOREIGN: Field = n(
        "rpm_foreign",
        Num,
        "60000 / trimmed mean 95 of the probe RTTs of the download and upload phases",
    );
    pub const RPM_SELF: Field = n("rpm_self", Num, "60000 / trimmed mean 95 of the load connections' TCP RTTs (TCP_INFO, per second) in those phases (null: UDP)");
    pub const RATING: Field = n(
        "rating",
        Str,
        "`Poor` (< 300 RPM), `Fair` (< 1000), `Good` (< 6000), `Excellent`",
    );
    pub const CONFIDENCE: Field = f("confidence", Str, "`Low` (a loaded phase had under 4 one-second intervals with probe replies, or lost over half its probes), `Medium` (the last 4 intervals' trimmed means spread over 5 %), `High`");
    pub const CONGESTION: Field = n("congestion", Str, "TCP congestion control of our load connections (the download's is the server's: not known here); null: UDP or unknown");
    pub const DOWNLOAD_BPS: Field = n(
        "download_bps",
        Num,
        "the download phase's receive rate, bit/s",
    );
    pub const UPLOAD_BPS: Field = n("upload_bps", Num, "the upload phase's send rate, bit/s");
    pub const PING_MIN_AVG_MAX: Field = n(
        "ping-min-avg-max",
        Str,
        "RouterOS' field: idle RTT `min/avg/max` in ms",
    );
    pub const JITTER_MIN_AVG_MAX: Field = n(
        "jitter-min-avg-max",
        Str,
        "RouterOS' field: idle absolute RTT difference of consecutive probes `min/avg/max` in ms",
    );
    pub const LOSS: Field = n(
        "loss",
        Str,
        "RouterOS' field: idle probe loss, `0% (0/300)`",
    );
    pub const TCP_DOWNLOAD: Field = n(
        "tcp-download",
        Str,
        "RouterOS' field: rate and CPU loads of a TCP download (null: not run)",
    );
    pub const TCP_UPLOAD: Field = n("tcp-upload", Str, "RouterOS' field: ... of a TCP upload");
    pub const UDP_DOWNLOAD: Field = n(
        "udp-download",
        Str,
        "RouterOS' field: ... of a UDP download",
    );
    pub const UDP_UPLOAD: Field = n("udp-upload", Str, "RouterOS' field: ... of a UDP upload");
    pub const NOTES: Field = f("notes", Nested, "notes for the reader, an array of text (a widened probe interval, a probe class that did not start, why no one-way delay)");
}

/// The speed test's records (issue 22): in builds with the `speedtest` feature only.
#[cfg(feature = "speedtest")]
mod speedtest {
    use super::{field, Field};

    pub(super) const PHASE: &[Field] = &[
        field::PHASE.required().meaning("`idle`, `download`, `upload`, `bidirectional` or `cooldown`"),
        field::START_S,
        field::DURATION_S.meaning("the phase's length, seconds"),
        field::RX_BPS,
        field::TX_BPS,
        field::LATENCY,
        field::INCREASE_MS,
        field::OWD,
        field::CLASSES,
        field::TCP_RTT_MS.meaning("TCP: mean of the load connections' smoothed RTT (TCP_INFO) over the steady seconds, ms"),
        field::LOCAL_CPU.meaning("average CPU % of this machine (load phases)"),
        field::REMOTE_CPU.meaning("average CPU % the server reported (load phases)"),
        field::RPM.meaning("this phase's round trips per minute, as the overall `rpm` but of this phase alone (null: no RTT)"),
        field::PROBE_INTERVAL_MS,
    ];

    pub(super) const SPEED_TEST: &[Field] = &[
        field::TIMESTAMP.meaning("when the speed test started, RFC 3339 UTC"),
        field::SERVER,
        field::PROTOCOL,
        field::CONNECTIONS.meaning("connections per load phase"),
        field::GRADE,
        field::GRADE_INCREASE_MS,
        field::RPM,
        field::RPM_FOREIGN,
        field::RPM_SELF,
        field::RATING,
        field::CONFIDENCE,
        field::CONGESTION,
        field::DOWNLOAD_BPS,
        field::UPLOAD_BPS,
        field::PING_MIN_AVG_MAX,
        field::JITTER_MIN_AVG_MAX,
        field::LOSS,
        field::TCP_DOWNLOAD,
        field::TCP_UPLOAD,
        field::UDP_DOWNLOAD,
        field::UDP_UPLOAD,
        field::RTT_METHOD,
        field::PROBE_INTERVAL_MS.meaning("the probe interval at the end (after any widening), ms"),
        field::NOTES,
    ];
}

const START: &[Field] = &[
    field::SERVER,
    field::PROTOCOL,
    field::DIRECTION,
    field::CONNECTIONS,
];

const INTERVAL: &[Field] = &[
    field::ELAPSED_S,
    field::INTERVAL_S,
    field::TX_CURRENT_BPS,
    field::TX_10S_AVG_BPS,
    field::TX_TOTAL_AVG_BPS,
    field::RX_CURRENT_BPS,
    field::RX_10S_AVG_BPS,
    field::RX_TOTAL_AVG_BPS,
    field::TX_BYTES,
    field::RX_BYTES,
    field::LOST_PACKETS,
    field::REMOTE_RX_BYTES,
    field::LOCAL_CPU,
    field::REMOTE_CPU,
    field::LOST_WIRE,
    field::LOST_HOST,
    field::REORDERED,
    field::DUPLICATES,
    field::TX_TARGET_BPS,
    field::SENDERS,
    field::TCP,
    field::THREAD_CPU,
    field::RTT_SENT,
    field::RTT_LOST,
    field::RTT_MIN_MS,
    field::RTT_AVG_MS,
    field::RTT_P50_MS,
    field::RTT_P90_MS,
    field::RTT_MAX_MS,
    field::RTT_JITTER_MS,
    field::TCP_RTT_MS,
    field::TX_LOSS_PCT,
    field::RX_LOSS_PCT,
    field::TX_DELIVERED_BPS,
];

const SUMMARY: &[Field] = &[
    field::TIMESTAMP,
    field::SERVER,
    field::PROTOCOL,
    field::DIRECTION,
    field::CONNECTIONS.meaning("TCP connections that carried data (read some, or had some of ours acknowledged: not those a server closed after the join), or UDP sockets used"),
    field::DURATION_S,
    field::TX_BYTES.meaning("bytes sent (the sum of the intervals)"),
    field::RX_BYTES.meaning("data bytes received (the sum of the intervals)"),
    field::TX_AVG_BPS,
    field::RX_AVG_BPS,
    field::LOST_PACKETS.meaning("UDP datagrams lost (the sum of the intervals' `lost_packets`)"),
    field::LOCAL_CPU_AVG,
    field::REMOTE_CPU_AVG,
    field::REMOTE_RX_BYTES.meaning("sum of what the peer's statuses said it received"),
    field::AUTH,
    field::END_REASON,
    field::LOST_WIRE.meaning("lost_packets minus lost_host"),
    field::LOST_HOST,
    field::REORDERED.meaning("UDP datagrams out of order"),
    field::DUPLICATES.meaning("UDP datagrams seen twice"),
    field::TCP.meaning("TCP_INFO at the end, with `retransmits` summed over the test (as in `interval`)"),
    field::THREAD_CPU_MAX,
    field::REMOTE_RX_SATURATED,
    field::REMOTE_RX_LOWER_BOUND,
    field::REMOTE_RX_SUSPECT,
    field::VERDICT,
    field::UDP_TX_IO,
    field::UDP_RX_IO,
    field::SERVER_SENT_BPS,
    field::RTT_METHOD,
    field::IDLE_RTT_MIN_MS,
    field::IDLE_RTT_AVG_MS,
    field::IDLE_RTT_P50_MS,
    field::IDLE_RTT_P90_MS,
    field::IDLE_RTT_MAX_MS,
    field::IDLE_JITTER_MS,
    field::LOADED_RTT_MIN_MS,
    field::LOADED_RTT_AVG_MS,
    field::LOADED_RTT_P50_MS,
    field::LOADED_RTT_P90_MS,
    field::LOADED_RTT_MAX_MS,
    field::LOADED_JITTER_MS,
    field::RTT_SENT.meaning("latency probes sent during the load"),
    field::RTT_LOST.meaning("of those, probes without a reply within 1 s"),
    field::BUFFERBLOAT_MS,
    field::TCP_RTT_MS.meaning("TCP: the kernel's smoothed round-trip time at the end, mean over the connections"),
    field::FOREIGN_DATAGRAMS,
    field::TX_LOSS_PCT.meaning("UDP upload: share of what we sent that the peer's statuses did not count, over the seconds its statuses cover (the last partial second and anything after our stop count only when the peer reported them; null: TCP, no upload, no statuses, or remote_rx_lower_bound)"),
    field::RX_LOSS_PCT.meaning("UDP download: lost_packets / (datagrams received + lost_packets), in % (null: TCP, or no download)"),
    field::TX_DELIVERED_BPS.meaning("UDP upload: what the peer's statuses say it received, per second they cover (null as tx_loss_pct)"),
];

const TARGET: &[Field] = &[
    field::TIMESTAMP.meaning("when the target's last attempt started, RFC 3339 UTC"),
    field::NAME,
    field::SERVER,
    field::OK,
    field::ATTEMPTS,
    field::PROTOCOL.or_null(),
    field::DIRECTION.or_null(),
    field::DURATION_S
        .or_null()
        .meaning("length of the data phase of the last attempt"),
    field::UP_BPS,
    field::DOWN_BPS,
    field::UP_LOSS_PCT,
    field::DOWN_LOSS_PCT,
    field::LOST_PACKETS
        .or_null()
        .meaning("UDP datagrams lost on the way to us"),
    field::IDLE_RTT_MS,
    field::LOADED_RTT_MS,
    field::BUFFERBLOAT_MS.meaning("loaded minus idle median round-trip time"),
    field::TCP_RTT_MS.meaning("TCP: smoothed round-trip time (TCP_INFO) at the end"),
    field::LOCAL_CPU_AVG,
    field::REMOTE_CPU_AVG.meaning("average CPU % the server reported"),
    field::END_REASON
        .or_null()
        .meaning("how the last attempt's data phase ended (as in `summary`)"),
    field::ERROR,
    field::PHASE,
    // A speed-test target's overall figures (issue 22; null for a plain test).
    #[cfg(feature = "speedtest")]
    field::GRADE.meaning("speed test: the bufferbloat grade (null: a plain test, or no latency)"),
    #[cfg(feature = "speedtest")]
    field::RPM.meaning("speed test: round trips per minute (null: a plain test)"),
    #[cfg(feature = "speedtest")]
    field::RATING.meaning("speed test: `Poor`, `Fair`, `Good` or `Excellent` (null: a plain test)"),
    #[cfg(feature = "speedtest")]
    field::CONFIDENCE
        .or_null()
        .meaning("speed test: `Low`, `Medium` or `High` (null: a plain test)"),
];

const ERROR: &[Field] = &[
    field::MESSAGE,
    field::PHASE.meaning("where it failed: `connect`, `hello`, `command`, `authentication`, `extra connections`, `UDP setup`, `data`, `status`"),
];

const SESSION_START: &[Field] = &[
    field::TIMESTAMP.meaning("when the session started, RFC 3339 UTC"),
    field::PEER,
    field::USER,
    field::AUTH,
    field::PROTOCOL,
    field::DIRECTION.meaning("the client's view: `transmit` means the server receives"),
    field::CONNECTIONS.meaning("TCP connections that joined, or client UDP ports"),
    field::UDP_PORT,
    field::REMOTE_TX_SPEED_BPS,
    field::LOCAL_TX_SPEED_BPS,
    field::TX_SIZE,
];

const SESSION_END: &[Field] = &[
    field::TIMESTAMP.meaning("when the session started, RFC 3339 UTC"),
    field::PEER,
    field::USER,
    field::AUTH,
    field::PROTOCOL,
    field::DIRECTION.meaning("the client's view"),
    field::CONNECTIONS.meaning("TCP connections or client UDP ports"),
    field::UDP_PORT,
    field::DURATION_S.meaning("length of the data phase"),
    field::TX_BYTES.meaning("bytes the server sent"),
    field::RX_BYTES.meaning("data bytes the server received"),
    field::TX_AVG_BPS,
    field::RX_AVG_BPS,
    field::LOST_PACKETS.meaning("UDP datagrams lost on the way to the server"),
    field::LOCAL_CPU_AVG.meaning("average CPU % of the server's machine"),
    field::REMOTE_CPU_AVG.meaning("average CPU % the client reported"),
    field::REMOTE_RX_BYTES.meaning("sum of what the client's statuses said it received"),
    field::END_REASON.meaning("`client_closed` (the client ended the test), `client_reset` (its connection was reset: killed, or closed with data unread), `control_timeout` (silence), `max_duration`, `quota` (a byte quota of its user or source ran out), `interrupted` (server shutdown), `error`"),
    field::ERROR.meaning("what failed, when `end_reason` is `error`"),
    field::UDP_TX_IO.meaning("UDP: how the server sent (`gso`, `mmsg`, `single`)"),
    field::UDP_RX_IO.meaning("UDP: how the server received (`gro`, `mmsg`, `single`)"),
    field::FOREIGN_DATAGRAMS.meaning("UDP datagrams received that were not the client's: from another address or port, of another size, or with a sequence far from the test's (not counted as data, loss or quota)"),
];

const AUTH_FAILURE: &[Field] = &[
    field::TIMESTAMP.meaning("when it happened, RFC 3339 UTC"),
    field::PEER,
    field::USER.meaning("the user name presented, if it got that far"),
    field::AUTH.meaning("`md5` or `ecsrp5`"),
];

const REJECTED: &[Field] = &[
    field::TIMESTAMP.meaning("when it happened, RFC 3339 UTC"),
    field::PEER,
    field::USER.meaning("authenticated user, if it got that far"),
    field::AUTH,
    field::PROTOCOL.meaning("`tcp` or `udp` from the command"),
    field::DIRECTION.meaning("from the command, the client's view"),
    field::PHASE
        .required()
        .meaning("the handshake phase that failed"),
    field::REASON,
    field::ERROR.required().meaning("what happened"),
];

/// The fields of a record kind, in order.
pub fn schema(kind: Kind) -> &'static [Field] {
    match kind {
        Kind::Start => START,
        Kind::Interval => INTERVAL,
        Kind::Summary => SUMMARY,
        Kind::Error => ERROR,
        Kind::Target => TARGET,
        Kind::SessionStart => SESSION_START,
        Kind::SessionEnd => SESSION_END,
        Kind::AuthFailure => AUTH_FAILURE,
        Kind::Rejected => REJECTED,
        #[cfg(feature = "speedtest")]
        Kind::Phase => speedtest::PHASE,
        #[cfg(feature = "speedtest")]
        Kind::SpeedTest => speedtest::SPEED_TEST,
    }
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent.
    Null,
    /// Text.
    Str(String),
    /// Integer.
    Int(u64),
    /// Number, shown with at most this many decimals.
    Num(f64, u8),
    /// Boolean.
    Bool(bool),
    /// A nested object: (key, value) pairs in order.
    Obj(Vec<(&'static str, Value)>),
    /// A nested array.
    List(Vec<Value>),
}

impl Value {
    /// A number with 3 decimals at most (seconds, CPU, rates).
    pub fn num(v: f64) -> Value {
        Value::Num(v, 3)
    }

    /// `Some(x)` as a number, `None` as null.
    pub fn opt_num(v: Option<f64>) -> Value {
        v.map_or(Value::Null, Value::num)
    }

    /// `Some(s)` as text, `None` as null.
    pub fn opt_str(v: Option<&str>) -> Value {
        v.map_or(Value::Null, |s| Value::Str(s.to_string()))
    }

    /// The number, for text output.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Num(v, _) => Some(*v),
            _ => None,
        }
    }

    fn ty(&self) -> Option<Ty> {
        match self {
            Value::Null => None,
            Value::Str(_) => Some(Ty::Str),
            Value::Int(_) => Some(Ty::Int),
            Value::Num(..) => Some(Ty::Num),
            Value::Bool(_) => Some(Ty::Bool),
            Value::Obj(_) | Value::List(_) => Some(Ty::Nested),
        }
    }

    /// A field of a nested object (`Null` when absent or not an object).
    pub fn field(&self, key: &str) -> &Value {
        match self {
            Value::Obj(fields) => fields
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(&Value::Null, |(_, v)| v),
            _ => &Value::Null,
        }
    }

    /// The value as JSON text.
    pub fn json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Str(s) => json_str(out, s),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Num(v, dp) => num(out, *v, *dp),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_str(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
        }
    }

    /// The value as a CSV cell or syslog value: empty for null; nested values have none.
    pub fn plain(&self) -> String {
        match self {
            Value::Null | Value::Obj(_) | Value::List(_) => String::new(),
            Value::Str(s) => s.clone(),
            Value::Num(..) | Value::Int(_) | Value::Bool(_) => self.json(),
        }
    }
}

/// Numbers are always finite in our output: NaN and infinities become 0. Integral values
/// print without a fraction.
fn num(out: &mut String, v: f64, dp: u8) {
    let v = if v.is_finite() { v } else { 0.0 };
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v:.*}", usize::from(dp));
    }
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A nested object from (key, value) pairs.
pub fn object(fields: &[(&'static str, Value)]) -> Value {
    Value::Obj(fields.to_vec())
}

/// A nested array.
pub fn array(items: impl IntoIterator<Item = Value>) -> Value {
    Value::List(items.into_iter().collect())
}

/// One record: its kind and its values, in schema order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Which record.
    pub kind: Kind,
    values: Vec<Value>,
}

impl Record {
    /// A record from a builder that pushes each field of the schema once, in order.
    ///
    /// The keys given to `push` are checked against the schema in tests and debug builds: a
    /// field added in one place only fails there.
    pub fn build(kind: Kind, fill: impl FnOnce(&mut Builder)) -> Record {
        let mut b = Builder {
            kind,
            values: Vec::with_capacity(schema(kind).len()),
        };
        fill(&mut b);
        debug_assert_eq!(
            b.values.len(),
            schema(kind).len(),
            "{} record: fields missing",
            kind.name()
        );
        Record {
            kind,
            values: b.values,
        }
    }

    /// (field, value) pairs in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static Field, &Value)> {
        schema(self.kind).iter().zip(&self.values)
    }

    /// A field's value. A field the kind does not have is a bug (debug builds panic; release
    /// builds read `Null`).
    pub fn get(&self, field: &Field) -> &Value {
        let v = self
            .fields()
            .find(|(d, _)| d.key == field.key)
            .map(|(_, v)| v);
        debug_assert!(
            v.is_some(),
            "{} record has no field {}",
            self.kind.name(),
            field.key
        );
        v.unwrap_or(&Value::Null)
    }

    /// A number field for text output (0 when null).
    pub fn f64(&self, field: &Field) -> f64 {
        self.get(field).as_f64().unwrap_or(0.0)
    }

    /// A text field for text output ("-" when null).
    pub fn text(&self, field: &Field) -> String {
        match self.get(field) {
            Value::Null => "-".into(),
            v => v.plain(),
        }
    }

    /// One NDJSON line (without the newline): `type` and `schema`, then every field.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"type\":");
        json_str(&mut s, self.kind.name());
        let _ = write!(s, ",\"schema\":{SCHEMA}");
        for (d, v) in self.fields() {
            s.push(',');
            json_str(&mut s, d.key);
            s.push(':');
            v.write_json(&mut s);
        }
        s.push('}');
        s
    }

    /// The CSV columns of a kind: every field that is not nested.
    pub fn csv_header(kind: Kind) -> Vec<&'static str> {
        schema(kind)
            .iter()
            .filter(|d| d.ty != Ty::Nested)
            .map(|d| d.key)
            .collect()
    }

    /// The CSV cells, in [`Record::csv_header`] order. Text values are neutralised against
    /// formula injection ([`crate::text::csv_text`], issue 18); numbers stay numeric (their
    /// type, not their text, decides: a `-1.5` the program computed is not a formula).
    pub fn csv_cells(&self) -> Vec<String> {
        self.fields()
            .filter(|(d, _)| d.ty != Ty::Nested)
            .map(|(_, v)| match v {
                Value::Str(s) => crate::text::csv_text(s).into_owned(),
                v => v.plain(),
            })
            .collect()
    }

    /// `key=value` pairs of the non-null, non-nested fields (syslog). Text values are escaped
    /// ([`crate::text::Esc`]: a newline in a peer's user name must not start a new line or a
    /// new `key=`, issue 18); values with a space are quoted.
    pub fn key_values(&self) -> String {
        self.key_values_except(&[])
    }

    /// [`Record::key_values`] without the `skip` keys (a caller that put them first).
    pub fn key_values_except(&self, skip: &[&Field]) -> String {
        let mut s = String::new();
        for (d, v) in self.fields() {
            if d.ty == Ty::Nested || *v == Value::Null || skip.iter().any(|f| f.key == d.key) {
                continue;
            }
            let p = match v {
                Value::Str(t) => crate::text::Esc(t).to_string(),
                v => v.plain(),
            };
            if !s.is_empty() {
                s.push(' ');
            }
            if p.contains([' ', '"']) || p.is_empty() {
                let _ = write!(s, "{}=\"{}\"", d.key, p.replace('"', "'"));
            } else {
                let _ = write!(s, "{}={p}", d.key);
            }
        }
        s
    }
}

/// Collects a record's values in schema order.
pub struct Builder {
    kind: Kind,
    values: Vec<Value>,
}

impl Builder {
    /// The next field. It must be the schema's next field, with a value of its type.
    pub fn push(&mut self, field: &Field, v: Value) -> &mut Self {
        let i = self.values.len();
        let doc = schema(self.kind).get(i);
        debug_assert!(
            doc.is_some_and(|d| d.key == field.key),
            "{} record: field {i} is {:?} in the schema, {:?} was pushed",
            self.kind.name(),
            doc.map(|d| d.key),
            field.key
        );
        debug_assert!(
            doc.is_some_and(|d| match v.ty() {
                None => d.nullable,
                Some(t) => t == d.ty || (t == Ty::Int && d.ty == Ty::Num),
            }),
            "{} record: {} has the wrong type ({v:?})",
            self.kind.name(),
            field.key
        );
        self.values.push(v);
        self
    }

    /// A text field.
    pub fn str(&mut self, field: &Field, v: &str) -> &mut Self {
        self.push(field, Value::Str(v.to_string()))
    }

    /// An integer field.
    pub fn int(&mut self, field: &Field, v: u64) -> &mut Self {
        self.push(field, Value::Int(v))
    }

    /// A number field.
    pub fn num(&mut self, field: &Field, v: f64) -> &mut Self {
        self.push(field, Value::num(v))
    }
}

#[cfg(test)]
mod tests {
    use super::field as F;
    use super::*;

    #[test]
    fn json_escapes_and_never_nan() {
        let r = Record::build(Kind::Error, |b| {
            b.str(&F::MESSAGE, "a\"b\\c\nd\u{1}")
                .push(&F::PHASE, Value::Null);
        });
        assert_eq!(
            r.to_json(),
            r#"{"type":"error","schema":1,"message":"a\"b\\c\nd\u0001","phase":null}"#
        );
        assert_eq!(Value::num(f64::NAN).json(), "0");
        assert_eq!(Value::num(f64::INFINITY).json(), "0");
        assert_eq!(Value::num(1.5).json(), "1.500");
        assert_eq!(Value::num(2.0).json(), "2");
    }

    #[test]
    fn csv_and_syslog_leave_nested_out() {
        let r = Record::build(Kind::Start, |b| {
            b.str(&F::SERVER, "h:2000")
                .str(&F::PROTOCOL, "udp")
                .str(&F::DIRECTION, "both")
                .int(&F::CONNECTIONS, 2);
        });
        assert_eq!(
            Record::csv_header(Kind::Start),
            ["server", "protocol", "direction", "connections"]
        );
        assert_eq!(r.csv_cells(), ["h:2000", "udp", "both", "2"]);
        assert_eq!(
            r.key_values(),
            "server=h:2000 protocol=udp direction=both connections=2"
        );
        assert!(!Record::csv_header(Kind::Interval).contains(&"senders"));
    }

    #[test]
    fn peer_text_is_neutralised_in_csv_and_escaped_in_syslog() {
        // issue 18: a user name is whatever the peer sent in its login
        let r = Record::build(Kind::AuthFailure, |b| {
            b.str(&F::TIMESTAMP, "2026-11-23T13:05:09Z")
                .str(&F::PEER, "192.0.2.1:5000")
                .str(&F::USER, "=cmd|' /C calc'!A0\ninfo: x")
                .str(&F::AUTH, "md5");
        });
        assert_eq!(
            r.csv_cells(),
            [
                "2026-11-23T13:05:09Z",
                "192.0.2.1:5000",
                "'=cmd|' /C calc'!A0\ninfo: x",
                "md5"
            ]
        );
        let r = Record::build(Kind::AuthFailure, |b| {
            b.str(&F::TIMESTAMP, "t")
                .str(&F::PEER, "p")
                .str(&F::USER, "x\nreason=ok\u{1b}")
                .str(&F::AUTH, "md5");
        });
        assert_eq!(
            r.key_values(),
            "timestamp=t peer=p user=x\\nreason=ok\\x1b auth=md5"
        );
        // numbers the program wrote stay numbers, even negative ones
        let r = Record::build(Kind::Start, |b| {
            b.str(&F::SERVER, "-h")
                .str(&F::PROTOCOL, "udp")
                .str(&F::DIRECTION, "both")
                .int(&F::CONNECTIONS, 2);
        });
        assert_eq!(r.csv_cells(), ["'-h", "udp", "both", "2"]);
        assert_eq!(crate::text::csv_text(&Value::num(-1.5).plain()), "'-1.500");
        assert_eq!(Value::num(-1.5).plain(), "-1.500");
    }

    #[test]
    #[should_panic(expected = "was pushed")]
    fn a_field_outside_the_schema_fails() {
        Record::build(Kind::Error, |b| {
            b.str(&F::SERVER, "x");
        });
    }

    #[test]
    fn keys_are_unique_and_snake_case() {
        for &k in Kind::ALL {
            let keys: Vec<_> = schema(k).iter().map(|d| d.key).collect();
            for (i, key) in keys.iter().enumerate() {
                assert!(!keys[..i].contains(key), "{}: {key} twice", k.name());
                // The speed test's RouterOS fields keep RouterOS' names (`ping-min-avg-max`).
                #[cfg(feature = "speedtest")]
                let dash = k == Kind::SpeedTest;
                #[cfg(not(feature = "speedtest"))]
                let dash = false;
                assert!(
                    key.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '_'
                        || (dash && c == '-')),
                    "{key}"
                );
                assert!(!["type", "schema"].contains(key));
            }
        }
    }

    /// The `end_reason` words docs/output.md gives for a kind (the back-quoted words of the
    /// row's meaning).
    fn documented_words(kind: Kind, field: &Field) -> Vec<String> {
        let doc = include_str!("../docs/output.md");
        let at = doc
            .find(&format!("### `{}`", kind.name()))
            .expect("a section per kind");
        let row = doc[at..]
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", field.key)))
            .expect("the field's row");
        let meaning = row.split('|').nth(3).unwrap_or("");
        let mut words: Vec<String> = meaning
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        words.sort();
        words.dedup();
        words
    }

    /// Issue 20 (B6): `end_reason` words are documented exactly: every word a client summary
    /// or a server session can carry, and no other.
    #[test]
    fn docs_output_md_lists_every_end_reason_word() {
        use crate::engine::StopReason;
        let mut client: Vec<String> = StopReason::ALL
            .iter()
            .filter(|r| !r.server_only())
            .map(|r| r.as_str().to_string())
            .collect();
        client.sort();
        client.dedup();
        assert_eq!(documented_words(Kind::Summary, &F::END_REASON), client);
        #[cfg(feature = "server")]
        {
            // A session that failed ends as `error` (report/server.rs).
            let mut server: Vec<String> = StopReason::ALL
                .iter()
                .map(|r| crate::server::end_reason(r).to_string())
                .collect();
            server.sort();
            server.dedup();
            assert_eq!(documented_words(Kind::SessionEnd, &F::END_REASON), server);
        }
    }

    /// docs/output.md documents every record with a table `| field | type | meaning |` under
    /// a heading naming the record (`### \`summary\``). Its keys and types must be the
    /// schema's, in order: no field is emitted undocumented, none documented that is not
    /// emitted. On failure the expected table is printed, ready to paste.
    #[test]
    fn docs_output_md_matches_the_schema() {
        let doc = include_str!("../docs/output.md");
        for &k in Kind::ALL {
            let heading = format!("### `{}`", k.name());
            let Some(at) = doc.find(&heading) else {
                panic!("docs/output.md has no section {heading}");
            };
            let rows: Vec<(String, String)> = doc[at..]
                .lines()
                .skip(1)
                .skip_while(|l| !l.starts_with('|'))
                .take_while(|l| l.starts_with('|'))
                .skip(2)
                .map(|l| {
                    let c: Vec<&str> = l.split('|').map(str::trim).collect();
                    (c[1].trim_matches('`').to_string(), c[2].to_string())
                })
                .collect();
            let want: Vec<(String, String)> = schema(k)
                .iter()
                .map(|d| {
                    let ty = if d.nullable {
                        format!("{} or null", d.ty.word())
                    } else {
                        d.ty.word().to_string()
                    };
                    (d.key.to_string(), ty)
                })
                .collect();
            if rows != want {
                let table: String = schema(k)
                    .iter()
                    .zip(&want)
                    .map(|(d, (_, ty))| format!("| `{}` | {ty} | {} |\n", d.key, d.doc))
                    .collect();
                panic!(
                    "docs/output.md {heading} is out of step with record.rs; expected:\n\n\
                     | field | type | meaning |\n|---|---|---|\n{table}"
                );
            }
        }
    }
}
