//! TCP tests: every direction with 1 and 4 connections, IPv6, an unlimited run, speed limits.

use btest::wire::{Direction, Protocol};

use crate::util::*;

fn matrix(conns: u8) {
    let srv = start_server(server_cfg());
    for dir in DIRECTIONS {
        let mut c = client_cfg(srv.addr, Protocol::Tcp, dir, 2.0);
        c.connection_count = conns;
        // Rate-limited so parallel tests on a 2-core machine do not starve each other.
        c.local_tx_speed = 400_000_000;
        c.remote_tx_speed = 400_000_000;
        check_flow(&srv, &c);
    }
    srv.assert_idle();
}

#[test]
fn every_direction_one_connection() {
    watchdog(60, || matrix(1));
}

#[test]
fn every_direction_four_connections() {
    watchdog(60, || matrix(4));
}

#[test]
fn ipv6_both_directions() {
    watchdog(30, || {
        let Some(srv) = try_server_on("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let addr = srv.addr;
        let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 2.0);
        c.connection_count = 2;
        c.local_tx_speed = 300_000_000;
        c.remote_tx_speed = 300_000_000;
        let (_, rec) = check_flow(&srv, &c);
        assert!(rec.start.peer.is_ipv6());
    });
}

#[test]
fn dual_stack_listener_serves_ipv4() {
    watchdog(30, || {
        let mut cfg = server_cfg();
        cfg.listen = vec!["[::]:0".parse().unwrap()];
        let Ok(s) = btest::server::Server::bind(cfg) else {
            eprintln!("skipped: no IPv6 here");
            return;
        };
        let port = s.local_addrs()[0].port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let srv = TestServer {
            handle: Some(s.spawn().unwrap()),
            addr,
        };
        let mut c = client_cfg(addr, Protocol::Tcp, Direction::ServerRx, 1.5);
        c.local_tx_speed = 200_000_000;
        check_flow(&srv, &c);
    });
}

#[test]
fn unlimited_random_data_both() {
    watchdog(30, || {
        let _x = exclusive();
        let srv = start_server(server_cfg());
        let mut c = client_cfg(srv.addr, Protocol::Tcp, Direction::Both, 2.0);
        c.random_data = true;
        check_flow(&srv, &c);
    });
}

#[test]
fn speed_limit_50m_each_direction() {
    watchdog(40, || speed_limit_50m(Protocol::Tcp));
}

/// Issue 9: a speed limit over 4 connections. The kernel paces each connection
/// (SO_MAX_PACING_RATE) and the user-space pacer keeps the average; the receivers of
/// connections 1..3 discard in the kernel (MSG_TRUNC) and must still count every byte.
#[test]
fn speed_limit_four_connections_each_direction() {
    watchdog(40, || {
        let _x = exclusive();
        let srv = start_server(server_cfg());
        let mut c = client_cfg(srv.addr, Protocol::Tcp, Direction::Both, 3.0);
        c.connection_count = 4;
        c.local_tx_speed = 80_000_000;
        c.remote_tx_speed = 80_000_000;
        let (r, rec) = check_flow(&srv, &c);
        let d = r.summary.duration;
        let tx = avg_bps(r.summary.status.totals.tx_bytes, d);
        let rx = avg_bps(r.summary.status.totals.rx_bytes, d);
        // The limit is an upper bound (+10 %); a quarter of it holds on a busy machine (the
        // achieved rate is measured by `make bench`, issue 20).
        assert!((20e6..=88e6).contains(&tx), "tx {tx} bit/s");
        assert!((20e6..=88e6).contains(&rx), "rx {rx} bit/s");
        let s = rec.result.unwrap();
        // What the server's discarding receivers counted is what the client wrote, give or take
        // the chunks in flight at the end (the limit keeps that under 1 %).
        assert!(
            rel_diff(r.summary.status.totals.tx_bytes, s.status.totals.rx_bytes) < 0.02,
            "client sent {} but server counted {}",
            r.summary.status.totals.tx_bytes,
            s.status.totals.rx_bytes
        );
    });
}

/// `--pacing precise` on TCP: user-space pacing per chunk on top of the kernel's, same average.
#[test]
fn speed_limit_precise_pacing() {
    watchdog(30, || {
        let _x = exclusive();
        let srv = start_server(server_cfg());
        let mut c = client_cfg(srv.addr, Protocol::Tcp, Direction::ServerRx, 2.0);
        c.local_tx_speed = 50_000_000;
        c.tuning.pacing = btest::config::Pacing::Precise;
        let (r, _) = check_flow(&srv, &c);
        let tx = avg_bps(r.summary.status.totals.tx_bytes, r.summary.duration);
        // Upper bound +10 %; a quarter of the limit holds on a busy machine (issue 20).
        assert!((12.5e6..=55e6).contains(&tx), "tx {tx} bit/s");
    });
}
