//! Datagrams the kernel dropped on one of our UDP sockets because its receive buffer was full:
//! the "dropped by this host" part of UDP loss, as opposed to datagrams lost on the wire.
//!
//! Source: the `drops` column of /proc/net/udp and /proc/net/udp6 (the socket's `sk_drops`),
//! found by the socket's inode, which /proc/self/fd/N names as `socket:[INODE]`. No `unsafe`
//! and no syscalls beyond reading those files.
//!
//! Owns: parsing the tables ([`parse_drops`], pure) and the per-socket running difference
//! ([`UdpDrops`]). Must not: be called on a per-packet path (each read walks the whole UDP
//! table of the network namespace); the status thread samples it once per status interval.
//! Must not: change the socket (buffer sizes are net.rs's business).
//!
//! Invariant: the kernel counter is 32 bits wide, so differences are taken modulo 2^32 and
//! survive a wrap.
//!
//! Units (issue 19): `sk_drops` counts socket buffers, not datagrams. With GRO on the socket
//! one buffer carries up to 64 datagrams and is dropped whole: an unlimited loopback receive
//! on Linux 6.18 reported 46,194 drops for 2,025,584 lost datagrams (43.9 each; the issue's
//! 94,906 x 44 = 4,175,864 exactly), all of it shown as wire loss. So drops are scaled by the
//! datagrams per buffer this socket received ([`to_datagrams`]): exact without GRO (one each),
//! an estimate with it (the dropped buffers are assumed to be like the received ones).

use std::net::UdpSocket;

/// The per-namespace UDP tables, IPv4 first.
const TABLES: [&str; 2] = ["/proc/net/udp", "/proc/net/udp6"];

/// 0-based column of the socket inode in /proc/net/udp{,6} (after `sl`, local and remote
/// address, `st`, `tx_queue:rx_queue`, `tr:tm->when`, `retrnsmt`, `uid`, `timeout`).
const INODE_COLUMN: usize = 9;

/// Finds the socket with `inode` in a /proc/net/udp or /proc/net/udp6 table and returns its
/// drop counter (the last column). Pure.
///
/// The header line is skipped; columns are whitespace-separated. The counter is printed as
/// `%d` by older kernels and `%u` by newer ones, so a negative value is read as its 32-bit
/// pattern. `None` when no line carries the inode or its drops column is not a number.
pub fn parse_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() <= INODE_COLUMN + 1 || cols[INODE_COLUMN].parse::<u64>().ok()? != inode {
            return None;
        }
        let last = cols.last()?;
        let v: i64 = last.parse().ok()?;
        // Kernel `sk_drops` is a 32-bit counter.
        Some(u64::from(v as u32))
    })
}

/// Parses the target of a /proc/self/fd/N link, `socket:[12345]`, into the inode.
fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The socket's current drop counter, from whichever table lists it.
fn read_drops(inode: u64) -> Option<u64> {
    TABLES.iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        parse_drops(&table, inode)
    })
}

/// Dropped buffers in datagrams: `skb_drops` times the size of the buffer an average datagram
/// of this socket arrived in (`dgs` = the datagrams received in the same interval, `sq` = the
/// sum over them of their buffer's datagram count, see `Counters::rx_skbs`), else over the
/// session so far (`dgs_all`, `sq_all`), else 1 each (nothing received yet: a lower bound).
/// Rounded to the nearest. Pure.
///
/// Size-biased rather than the plain mean of the buffers: a paced sender's GSO batches vary
/// (what its pacer says is due), and the full batches of a burst are what overflow the socket.
/// On loopback the plain mean left up to 10 % of an interval's drops as wire loss, this up to
/// 0.24 % (issue 19, `cargo test --test integration interop::loopback -- --nocapture`).
pub fn to_datagrams(skb_drops: u64, dgs: u64, sq: u64, dgs_all: u64, sq_all: u64) -> u64 {
    let (b, d) = if dgs > 0 {
        (dgs, sq)
    } else if dgs_all > 0 {
        (dgs_all, sq_all)
    } else {
        return skb_drops;
    };
    let d = d.max(b); // buffers of at least one datagram
    ((u128::from(skb_drops) * u128::from(d) + u128::from(b) / 2) / u128::from(b)) as u64
}

/// Receive-buffer drops of one UDP socket, as differences between readings.
#[derive(Debug)]
pub struct UdpDrops {
    /// The socket's inode (its key in /proc/net/udp{,6}).
    inode: u64,
    /// Drop counter at the previous reading.
    last: u64,
    /// Datagrams received over the session and their size-biased sum, for [`to_datagrams`].
    dgs_all: u64,
    sq_all: u64,
}

impl UdpDrops {
    /// Finds the socket in /proc and takes the first reading. `None` when drops cannot be
    /// measured for it: /proc unavailable, or the socket is not bound yet (an unbound socket
    /// is not listed), so the caller can report "unknown" rather than 0.
    pub fn new(sock: &UdpSocket) -> Option<UdpDrops> {
        use crate::sys::AsSock;
        // Outside Linux there is no /proc/self/fd: the link is missing and drops are unknown.
        let link = std::fs::read_link(format!("/proc/self/fd/{}", sock.raw_sock())).ok()?;
        let inode = parse_socket_link(link.to_str()?)?;
        let last = read_drops(inode)?;
        Some(UdpDrops {
            inode,
            last,
            dgs_all: 0,
            sq_all: 0,
        })
    }

    /// Datagrams dropped since the previous call, from the buffers dropped and what the
    /// socket's reader counted in `c` since then (taken here).
    pub fn delta_datagrams(&mut self, c: &crate::engine::counters::Counters) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let skbs = self.delta();
        let dgs = c.rx_skbs.swap(0, Relaxed);
        let sq = c.rx_skb_datagrams.swap(0, Relaxed);
        self.dgs_all += dgs;
        self.sq_all += sq;
        to_datagrams(skbs, dgs, sq, self.dgs_all, self.sq_all)
    }

    /// Datagrams dropped since the previous call (or `new`); 0 when the tables cannot be read.
    pub fn delta(&mut self) -> u64 {
        let Some(now) = read_drops(self.inode) else {
            return 0;
        };
        let d = counter_delta(self.last, now);
        self.last = now;
        d
    }
}

/// `now - prev` for the kernel's 32-bit counter, modulo 2^32.
fn counter_delta(prev: u64, now: u64) -> u64 {
    u64::from((now as u32).wrapping_sub(prev as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `cat /proc/net/udp` and `cat /proc/net/udp6` on Linux 6.18, trailing
    // blanks as the kernel prints them; the drops of inodes 36846 and 36847 edited from 0.
    const UDP: &str = concat!(
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n",
        " 2607: 00000000:DD03 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 36848 2 00000000c6b3e798 0         \n",
        " 6099: 0100007F:6AA7 0100007F:6BA7 01 00000000:00000000 00:00000000 00000000     0        0 36708 2 000000001445a652 0         \n",
        " 7859: 0100007F:B187 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 36846 2 00000000406fc00f 1337      \n",
    );
    const UDP6: &str = concat!(
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n",
        " 2965: 00000000000000000000000001000000:9E69 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 36847 2 000000002d032c21 42\n",
    );

    #[test]
    fn parses_captured_tables() {
        assert_eq!(parse_drops(UDP, 36846), Some(1337));
        assert_eq!(parse_drops(UDP, 36848), Some(0));
        assert_eq!(parse_drops(UDP, 36708), Some(0));
        assert_eq!(parse_drops(UDP6, 36847), Some(42));
        // Not in this table (the caller tries the other one).
        assert_eq!(parse_drops(UDP, 36847), None);
        assert_eq!(parse_drops(UDP6, 36846), None);
        // The header alone, and nothing at all.
        assert_eq!(parse_drops(UDP.lines().next().unwrap(), 36846), None);
        assert_eq!(parse_drops("", 36846), None);
        // A value that happens to appear in another column is not an inode match.
        assert_eq!(parse_drops(UDP, 2), None);
    }

    #[test]
    fn reads_old_kernel_signed_and_rejects_garbage() {
        let head = "sl local rem st q tr r uid to inode ref ptr drops\n";
        let neg = format!("{head} 1: A:1 B:0 07 0:0 0:0 0 0 0 99 2 ff -1\n");
        assert_eq!(parse_drops(&neg, 99), Some(u64::from(u32::MAX)));
        let bad = format!("{head} 1: A:1 B:0 07 0:0 0:0 0 0 0 99 2 ff x\n");
        assert_eq!(parse_drops(&bad, 99), None);
        let short = format!("{head} 1: A:1 B:0 07 0:0 0:0 0 0 0 99\n");
        assert_eq!(parse_drops(&short, 99), None);
    }

    #[test]
    fn parses_fd_link() {
        assert_eq!(parse_socket_link("socket:[36846]"), Some(36846));
        assert_eq!(parse_socket_link("pipe:[36846]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    #[test]
    fn drops_are_scaled_to_datagrams() {
        // the receive: 94,906 buffers of 44 datagrams (1000 received, 44 each)
        assert_eq!(to_datagrams(94_906, 44_000, 44 * 44_000, 0, 0), 4_175_864);
        // size-biased: 10 datagrams alone and 10 in one buffer: 5.5 per buffer on average
        // by buffer, 5.5 by datagram too here ((10*1 + 10*10) / 20)
        assert_eq!(to_datagrams(2, 20, 110, 0, 0), 11);
        // without GRO one datagram a buffer: exact
        assert_eq!(to_datagrams(500, 9000, 9000, 9000, 9000), 500);
        // nothing received this interval: the session's ratio, else a lower bound
        assert_eq!(to_datagrams(10, 0, 0, 100, 4000), 400);
        assert_eq!(to_datagrams(10, 0, 0, 0, 0), 10);
        // rounded to the nearest; never below one datagram a buffer
        assert_eq!(to_datagrams(3, 2, 3, 0, 0), 5);
        assert_eq!(to_datagrams(3, 5, 0, 0, 0), 3);
        assert_eq!(to_datagrams(0, 5, 200, 0, 0), 0);
    }

    #[test]
    fn counter_differences_survive_a_wrap() {
        assert_eq!(counter_delta(10, 25), 15);
        assert_eq!(counter_delta(7, 7), 0);
        assert_eq!(counter_delta(u64::from(u32::MAX) - 1, 3), 5);
    }

    #[test]
    fn live_overflowing_socket_counts_drops() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_recv_buffer_size(1024).unwrap();
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        let rx: UdpSocket = s.into();
        let mut drops = UdpDrops::new(&rx).unwrap();
        assert_eq!(drops.delta(), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let payload = [0u8; 1400];
        for _ in 0..2000 {
            tx.send_to(&payload, to).unwrap();
        }
        let n = drops.delta();
        assert!(n > 0 && n <= 2000, "{n}");
        assert_eq!(drops.delta(), 0);
        // The sender's socket dropped nothing.
        assert_eq!(UdpDrops::new(&tx).unwrap().delta(), 0);
        // An unbound socket is not in the tables.
        let unbound: UdpSocket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .unwrap()
                .into();
        assert!(UdpDrops::new(&unbound).is_none());
    }

    #[test]
    fn live_ipv6_socket_is_found() {
        let Ok(s) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 on this host
        };
        assert!(UdpDrops::new(&s).is_some());
    }
}
