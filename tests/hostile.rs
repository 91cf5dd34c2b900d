//! Hostile and broken clients: each is rejected or ended with a reason, its threads and UDP
//! port are freed, and the server goes on serving a normal client afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use btest::wire::{command, Command, Direction, Protocol};

use crate::util::*;

fn hello(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h, [1, 0, 0, 0]);
    s
}

/// Reads until the server closes; fails if it keeps the connection open past `within`.
fn expect_closed(s: &mut TcpStream, within: Duration) {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        assert!(t0.elapsed() < within, "server kept the connection open");
    }
}

fn still_serves(srv: &TestServer) {
    let mut c = client_cfg(srv.addr, Protocol::Tcp, Direction::Both, 1.2);
    c.local_tx_speed = 100_000_000;
    c.remote_tx_speed = 100_000_000;
    check_flow(srv, &c);
}

fn hostile_server() -> TestServer {
    let mut cfg = server_cfg();
    cfg.handshake_timeout = Duration::from_secs(1);
    cfg.control_timeout = Duration::from_secs(2);
    start_server(cfg)
}

fn rejected_after(srv: &TestServer, bytes: &[u8], half_close: bool) {
    let before = srv.stats().rejected;
    let mut s = hello(srv.addr);
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    expect_closed(&mut s, Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(3), || srv.stats().rejected > before),
        "not counted as rejected: {:?}",
        srv.stats()
    );
    srv.assert_idle();
}

#[test]
fn garbage_truncation_bad_bytes_unknown_token() {
    watchdog(60, || {
        let srv = hostile_server();
        let cases: [(&str, Vec<u8>, bool); 6] = [
            ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), false),
            (
                "truncated command",
                vec![1, 1, 1, 0, 0, 0x80, 0, 0, 0, 0],
                true,
            ),
            (
                "bad protocol byte",
                vec![2, 1, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                false,
            ),
            (
                "bad direction 0",
                vec![1, 0, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                false,
            ),
            (
                "bad direction 4",
                vec![0, 4, 1, 0, 0xdc, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                false,
            ),
            (
                "marker with unknown token",
                command::marker_to_bytes([0xab, 0xcd]).to_vec(),
                false,
            ),
        ];
        for (what, bytes, half) in cases {
            eprintln!("case: {what}");
            rejected_after(&srv, &bytes, half);
        }
        still_serves(&srv);
        srv.assert_idle();
    });
}

#[test]
fn silent_client_times_out() {
    watchdog(30, || {
        let srv = hostile_server();
        let t0 = Instant::now();
        let mut s = hello(srv.addr);
        expect_closed(&mut s, Duration::from_secs(5));
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        srv.assert_idle();
        assert!(srv.stats().rejected >= 1);
        // and a client that closes without sending anything
        drop(hello(srv.addr));
        srv.assert_idle();
        still_serves(&srv);
    });
}

fn udp_command(dir: Direction) -> [u8; 16] {
    Command {
        protocol: Protocol::Udp,
        direction: dir,
        random_data: false,
        connection_count: 0,
        tx_size: 1000,
        client_buf_size: 0,
        remote_tx_speed: 10_000_000,
        local_tx_speed: 0,
    }
    .to_bytes()
}

#[test]
fn udp_client_vanishes_without_closing() {
    watchdog(30, || {
        let srv = hostile_server();
        let mut s = hello(srv.addr);
        s.write_all(&udp_command(Direction::ServerTx)).unwrap();
        let mut ok = [0u8; 6];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(&ok[..4], &[1, 0, 0, 0]);
        let port = u16::from_be_bytes([ok[4], ok[5]]);
        assert!(wait_until(Duration::from_secs(2), || srv
            .stats()
            .udp_ports_in_use
            == 1));
        // never bind port+256, never send a status: a zombie. The control timeout (2 s) ends it.
        let rec = srv.next_session(Duration::from_secs(8));
        let sum = rec.result.expect("session record");
        assert_eq!(sum.end_reason, btest::engine::StopReason::ControlTimeout);
        assert_eq!(rec.start.udp_port, Some(port));
        srv.assert_idle();
        drop(s);
        still_serves(&srv);
    });
}

#[test]
fn udp_client_closes_mid_test() {
    watchdog(30, || {
        let srv = hostile_server();
        let mut s = hello(srv.addr);
        s.write_all(&udp_command(Direction::Both)).unwrap();
        let mut ok = [0u8; 6];
        s.read_exact(&mut ok).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        let rec = srv.next_session(Duration::from_secs(5));
        assert_eq!(
            rec.result.unwrap().end_reason,
            btest::engine::StopReason::PeerClosed
        );
        srv.assert_idle();
        still_serves(&srv);
    });
}

#[test]
fn garbage_on_udp_control_connection() {
    watchdog(30, || {
        let srv = hostile_server();
        let mut s = hello(srv.addr);
        s.write_all(&udp_command(Direction::ServerRx)).unwrap();
        let mut ok = [0u8; 6];
        s.read_exact(&mut ok).unwrap();
        s.write_all(&[0x55; 12]).unwrap();
        let rec = srv.next_session(Duration::from_secs(5));
        let e = rec
            .result
            .expect_err("a bad status must end the session with an error");
        assert!(e.contains("status"), "{e}");
        srv.assert_idle();
        still_serves(&srv);
    });
}

#[test]
fn multi_connection_client_that_never_joins() {
    watchdog(30, || {
        let srv = hostile_server();
        let mut s = hello(srv.addr);
        let mut cmd = udp_command(Direction::ServerTx);
        cmd[0] = 1; // TCP
        cmd[3] = 8; // 8 connections
        cmd[4..6].copy_from_slice(&32768u16.to_le_bytes());
        s.write_all(&cmd).unwrap();
        let mut ok = [0u8; 4];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(ok[0], 1);
        assert!(ok[1] != 0 || ok[2] != 0, "token expected: {ok:?}");
        // a marker with the right token from the same address joins; then give up joining
        let mut j = hello(srv.addr);
        j.write_all(&command::marker_to_bytes([ok[1], ok[2]]))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(j);
        drop(s);
        let rec = srv.next_session(Duration::from_secs(5));
        assert_eq!(
            rec.start.connections, 2,
            "the session runs with the connections that joined"
        );
        srv.assert_idle();
        still_serves(&srv);
    });
}

#[test]
fn session_limit_rejects_and_recovers() {
    watchdog(30, || {
        let mut cfg = server_cfg();
        cfg.max_sessions = 1;
        let srv = start_server(cfg);
        let mut first = hello(srv.addr);
        first.write_all(&udp_command(Direction::ServerTx)).unwrap();
        let mut ok = [0u8; 6];
        first.read_exact(&mut ok).unwrap();
        let mut second = hello(srv.addr);
        second.write_all(&udp_command(Direction::ServerTx)).unwrap();
        expect_closed(&mut second, Duration::from_secs(5));
        assert!(srv.stats().rejected >= 1);
        drop(first);
        assert!(wait_until(Duration::from_secs(3), || srv
            .stats()
            .active_sessions
            == 0));
        let _ = srv.next_session(Duration::from_secs(3));
        still_serves(&srv);
    });
}

/// Issue 18 item 7: random datagrams sent from the client's own address and port into a live
/// data port (a spoofer, or a stray) are counted as foreign: not as traffic, loss or quota.
/// Before, random sequence numbers made `lost_packets` 4.8e12.
#[test]
fn foreign_datagrams_into_a_udp_data_port_are_not_traffic_or_loss() {
    watchdog(60, || {
        let srv = start_server(server_cfg());
        let addr = srv.addr;
        let client = std::thread::spawn(move || {
            let mut c = client_cfg(addr, Protocol::Udp, Direction::ServerRx, 3.0);
            c.local_tx_speed = 10_000_000;
            c.latency = btest::config::Latency::Off;
            run_client(&c).0
        });
        let udp_port = loop {
            match srv.h().events().recv_timeout(Duration::from_secs(10)) {
                Ok(btest::server::ServerEvent::Start(s)) => break s.udp_port.unwrap(),
                Ok(_) => {}
                Err(_) => panic!("no session start"),
            }
        };
        // A live data port: the client's datagrams are flowing (the probe).
        std::thread::sleep(Duration::from_millis(500));
        // The client's own port (server port + 256), shared through SO_REUSEPORT as the
        // client's data socket allows.
        let spoof =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        spoof.set_reuse_port(true).unwrap();
        let from: SocketAddr = format!("127.0.0.1:{}", udp_port + 256).parse().unwrap();
        spoof.bind(&from.into()).unwrap();
        let to: SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
        let mut x = 0x2545_f491u32;
        let mut buf = vec![0u8; 1472];
        let sent = 20_000;
        for i in 0..sent {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[..4].copy_from_slice(&x.to_be_bytes());
            // Half of the client's size, half of others.
            let len = if i % 2 == 0 {
                1472
            } else {
                4 + (x as usize % 1400)
            };
            let _ = spoof.send_to(&buf[..len], &to.into());
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let r = client.join().unwrap().expect("the test ran");
        let rec = srv.next_session(Duration::from_secs(10));
        let s = rec.result.expect("the session ran");
        let t = &s.status.totals;
        eprintln!(
            "client sent {} B; server received {} B, lost {}, reordered {}, foreign {} of {sent} spoofed",
            r.summary.status.totals.tx_bytes, t.rx_bytes, t.lost as i64, t.reordered, t.foreign
        );
        // Most spoofed datagrams reach the server's socket (a few may go to the client's
        // socket through SO_REUSEPORT, or be dropped): all that arrive are foreign.
        assert!(t.foreign >= sent as u64 / 2, "{t:?}");
        assert!((t.lost as i64) < 1_000, "phantom loss: {t:?}");
        let diff = t.rx_bytes.abs_diff(r.summary.status.totals.tx_bytes);
        assert!(
            diff < r.summary.status.totals.tx_bytes / 10,
            "received {} vs sent {}",
            t.rx_bytes,
            r.summary.status.totals.tx_bytes
        );
        srv.assert_idle();
    });
}
