//! The UDP port pair rule: the client binds its socket for connection `i` at the server's
//! announced port + 256 + `i` (samm-git captures; every open implementation agrees;
//! docs/protocol.md 8), and every one of those ports must fit in a u16.
//!
//! Owns: that arithmetic, for both roles: the client's binds, the server's send targets and
//! address filter, and the server's port pool bound (the last server port whose client ports
//! all fit). Before issue 20 it was computed at five sites, one with `u32` arithmetic and one
//! with `wrapping_add` for the same value. Must not: touch sockets, allocate, or panic on any
//! input (overflow is `None`, never a wrapped port).

use super::UDP_CLIENT_PORT_OFFSET;

/// The client's port for connection `i` (0-based) when the server announced `server_port`;
/// `None` when it does not fit in a u16.
pub fn client_port(server_port: u16, i: u16) -> Option<u16> {
    server_port
        .checked_add(UDP_CLIENT_PORT_OFFSET)?
        .checked_add(i)
}

/// The client's ports for connections `0..n`, in order, stopping at the first that does not
/// fit (so the server's send targets never wrap around to a low port).
pub fn client_ports(server_port: u16, n: usize) -> impl Iterator<Item = u16> {
    (0..n).map_while(move |i| client_port(server_port, u16::try_from(i).ok()?))
}

/// The highest server port whose `n` client ports (at least 1) all fit below 65536;
/// `None` when `n` is so large that none does.
pub fn last_server_port(n: u16) -> Option<u16> {
    u16::MAX
        .checked_sub(UDP_CLIENT_PORT_OFFSET)?
        .checked_sub(n.max(1) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_port_golden() {
        // RouterOS servers start at 2001; the client binds 2257 (captures, docs/protocol.md 8).
        assert_eq!(client_port(2001, 0), Some(2257));
        assert_eq!(client_port(2001, 3), Some(2260));
        assert_eq!(client_port(65279, 0), Some(65535));
        assert_eq!(client_port(65279, 1), None);
        assert_eq!(client_port(65280, 0), None);
        assert_eq!(client_port(u16::MAX, u16::MAX), None);
        assert_eq!(client_port(1, 0), Some(257));
    }

    #[test]
    fn client_ports_stop_at_overflow() {
        assert_eq!(
            client_ports(2001, 4).collect::<Vec<_>>(),
            [2257, 2258, 2259, 2260]
        );
        assert_eq!(client_ports(2001, 0).count(), 0);
        assert_eq!(
            client_ports(65277, 5).collect::<Vec<_>>(),
            [65533, 65534, 65535]
        );
        assert_eq!(client_ports(65535, 2).count(), 0);
        // More connections than a u16 holds: stops, never wraps.
        assert_eq!(client_ports(0, 70_000).last(), Some(65535));
    }

    #[test]
    fn last_server_port_golden() {
        assert_eq!(last_server_port(1), Some(65279));
        assert_eq!(last_server_port(0), Some(65279));
        assert_eq!(last_server_port(20), Some(65260));
        assert_eq!(last_server_port(65280), Some(0));
        assert_eq!(last_server_port(65281), None);
        // Every client port of the last start fits, one more start would not.
        for n in [1u16, 2, 20, 255] {
            let hi = last_server_port(n).unwrap();
            assert_eq!(client_port(hi, n - 1), Some(65535));
            assert_eq!(client_port(hi + 1, n - 1), None);
        }
    }
}
