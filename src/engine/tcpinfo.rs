//! Kernel TCP statistics per data connection (Linux TCP_INFO): smoothed RTT and its variance,
//! retransmissions, congestion window, MSS and the kernel's delivery-rate estimate, so a report
//! can say *why* a TCP test ran at the rate it did.
//!
//! Owns: mapping `libc::tcp_info` to [`TcpStats`] ([`from_raw`], pure) and combining the
//! connections of a session ([`aggregate`], pure). The getsockopt itself lives in
//! [`crate::sys::tcp_info`].
//!
//! Must not: be called on a per-packet path (each read is a syscall); the status thread
//! samples it once per status interval. Must not: touch socket options (net.rs does) or keep
//! state between samples (every field is either a kernel gauge or a kernel running total).

use std::net::TcpStream;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// One connection's TCP statistics, as the kernel reports them at the moment of reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TcpStats {
    /// Smoothed round-trip time, microseconds (`tcpi_rtt`); 0 before any measurement.
    pub rtt_us: u32,
    /// RTT mean deviation, microseconds (`tcpi_rttvar`).
    pub rttvar_us: u32,
    /// Segments retransmitted over the connection's lifetime (`tcpi_total_retrans`); a running
    /// total, so per-interval figures are differences of two readings.
    pub retransmits_total: u32,
    /// Send congestion window, segments (`tcpi_snd_cwnd`).
    pub cwnd: u32,
    /// Send MSS, bytes (`tcpi_snd_mss`).
    pub mss: u32,
    /// The kernel's most recent delivery-rate estimate in bit/s (`tcpi_delivery_rate` is
    /// bytes/s; Linux 4.9+). `None` when the kernel has none: nothing sent yet, or an older
    /// kernel that leaves the field zero.
    pub delivery_rate_bps: Option<u64>,
}

/// Maps the kernel struct to [`TcpStats`]. Pure.
///
/// Every field used here exists in libc's `tcp_info` for both linux-gnu and linux-musl.
#[cfg(target_os = "linux")]
pub fn from_raw(t: &libc::tcp_info) -> TcpStats {
    TcpStats {
        rtt_us: t.tcpi_rtt,
        rttvar_us: t.tcpi_rttvar,
        retransmits_total: t.tcpi_total_retrans,
        cwnd: t.tcpi_snd_cwnd,
        mss: t.tcpi_snd_mss,
        delivery_rate_bps: (t.tcpi_delivery_rate > 0)
            .then(|| t.tcpi_delivery_rate.saturating_mul(8)),
    }
}

/// Reads one connection's statistics; `None` when TCP_INFO is unavailable for it.
#[cfg(target_os = "linux")]
pub fn read(s: &TcpStream) -> Option<TcpStats> {
    crate::sys::tcp_info(s.as_raw_fd()).map(|t| from_raw(&t))
}

/// TCP_INFO is Linux's (issue 21; FreeBSD's and macOS's structs differ): reports show the
/// TCP figures as unknown elsewhere.
#[cfg(not(target_os = "linux"))]
pub fn read(_s: &TcpStream) -> Option<TcpStats> {
    None
}

/// Bytes of ours the peer acknowledged on this connection (`tcpi_bytes_acked`, Linux 4.1+);
/// `None` when the kernel does not say.
#[cfg(target_os = "linux")]
pub fn bytes_acked(s: &TcpStream) -> Option<u64> {
    crate::sys::tcp_info(s.as_raw_fd()).map(|t| t.tcpi_bytes_acked)
}

/// No TCP_INFO outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn bytes_acked(_s: &TcpStream) -> Option<u64> {
    None
}

/// Combines the connections of one session into one line of figures:
/// RTT and RTT variance are means over the connections that have an RTT (> 0);
/// retransmissions and congestion windows are sums; MSS is the largest; delivery rates are
/// summed over the connections that have one (`None` when none has).
pub fn aggregate(v: &[TcpStats]) -> TcpStats {
    let measured: Vec<&TcpStats> = v.iter().filter(|s| s.rtt_us > 0).collect();
    let mean = |f: fn(&TcpStats) -> u32| -> u32 {
        if measured.is_empty() {
            return 0;
        }
        let sum: u64 = measured.iter().map(|s| u64::from(f(s))).sum();
        // A mean of u32 values fits in u32.
        (sum / measured.len() as u64) as u32
    };
    let rates: Vec<u64> = v.iter().filter_map(|s| s.delivery_rate_bps).collect();
    TcpStats {
        rtt_us: mean(|s| s.rtt_us),
        rttvar_us: mean(|s| s.rttvar_us),
        retransmits_total: v
            .iter()
            .fold(0u32, |a, s| a.saturating_add(s.retransmits_total)),
        cwnd: v.iter().fold(0u32, |a, s| a.saturating_add(s.cwnd)),
        mss: v.iter().map(|s| s.mss).max().unwrap_or(0),
        delivery_rate_bps: (!rates.is_empty())
            .then(|| rates.iter().fold(0u64, |a, r| a.saturating_add(*r))),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A hand-filled `tcp_info`: zeroed, then the fields under test set.
    fn fixture() -> libc::tcp_info {
        let mut t = crate::sys::tcp_info_zeroed();
        t.tcpi_rtt = 1500;
        t.tcpi_rttvar = 250;
        t.tcpi_total_retrans = 7;
        t.tcpi_snd_cwnd = 10;
        t.tcpi_snd_mss = 1448;
        t.tcpi_delivery_rate = 1_250_000;
        // Look-alikes that must not leak in: per-episode retransmits, receive MSS, RTO.
        t.tcpi_retransmits = 3;
        t.tcpi_rcv_mss = 536;
        t.tcpi_rto = 204_000;
        t
    }

    #[test]
    fn from_raw_maps_fields() {
        assert_eq!(
            from_raw(&fixture()),
            TcpStats {
                rtt_us: 1500,
                rttvar_us: 250,
                retransmits_total: 7,
                cwnd: 10,
                mss: 1448,
                delivery_rate_bps: Some(10_000_000),
            }
        );
        // Nothing filled in (old kernel, fresh socket): all zero, no delivery rate.
        assert_eq!(
            from_raw(&crate::sys::tcp_info_zeroed()),
            TcpStats::default()
        );
    }

    #[test]
    fn aggregate_means_sums_and_max() {
        let a = TcpStats {
            rtt_us: 1000,
            rttvar_us: 100,
            retransmits_total: 2,
            cwnd: 10,
            mss: 1448,
            delivery_rate_bps: Some(1_000_000),
        };
        let b = TcpStats {
            rtt_us: 3000,
            rttvar_us: 300,
            retransmits_total: 5,
            cwnd: 20,
            mss: 1460,
            delivery_rate_bps: None,
        };
        // No RTT sample yet: excluded from the means, still counted in sums.
        let c = TcpStats {
            cwnd: 4,
            mss: 536,
            retransmits_total: 1,
            ..TcpStats::default()
        };
        assert_eq!(
            aggregate(&[a, b, c]),
            TcpStats {
                rtt_us: 2000,
                rttvar_us: 200,
                retransmits_total: 8,
                cwnd: 34,
                mss: 1460,
                delivery_rate_bps: Some(1_000_000),
            }
        );
        assert_eq!(aggregate(&[]), TcpStats::default());
        assert_eq!(aggregate(&[c]).rtt_us, 0);
        let max = TcpStats {
            retransmits_total: u32::MAX,
            cwnd: u32::MAX,
            ..a
        };
        let s = aggregate(&[max, max]);
        assert_eq!((s.retransmits_total, s.cwnd), (u32::MAX, u32::MAX));
        assert_eq!(s.delivery_rate_bps, Some(2_000_000));
    }

    #[test]
    fn live_loopback_connection_is_plausible() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let data = [7u8; 64 * 1024];
        c.write_all(&data).unwrap();
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got).unwrap();
        for sock in [&c, &s] {
            let st = read(sock).unwrap();
            assert!(st.rtt_us < 1_000_000, "{st:?}");
            assert!(st.cwnd > 0, "{st:?}");
            assert!(st.mss > 0, "{st:?}");
        }
        let agg = aggregate(&[read(&c).unwrap(), read(&s).unwrap()]);
        assert!(agg.cwnd > 0 && agg.mss > 0);
        // A UDP socket has no TCP_INFO.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(crate::sys::tcp_info(u.as_raw_fd()).is_none());
    }
}
