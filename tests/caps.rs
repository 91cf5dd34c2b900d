//! Issue 10: `--max-rate` clamps a session instead of refusing it. What the server sends is
//! paced at the cap; over TCP, what it reads is too, so flow control slows the client's
//! sending to the cap as well. Rates are checked with wide tolerances (functional, not a
//! benchmark), and far below the unlimited loopback rate (tens of Gbit/s) so a clamp that did
//! nothing could not pass.

use std::time::Duration;

use btest::wire::{Direction, Protocol};

use crate::util::*;

const CAP: u64 = 40_000_000;

fn capped_server() -> TestServer {
    let mut cfg = server_cfg();
    cfg.max_rate = Some(CAP);
    start_server(cfg)
}

#[test]
fn tcp_both_ways_unlimited_is_clamped_to_the_cap() {
    watchdog(60, || {
        let _x = exclusive();
        let srv = capped_server();
        // A RouterOS-style command: both ways, both speeds 0 (unlimited).
        let c = client_cfg(srv.addr, Protocol::Tcp, Direction::Both, 4.0);
        let (r, _) = run_client(&c);
        let r = r.unwrap();
        let d = r.summary.duration;
        let got_rx = avg_bps(r.summary.status.totals.rx_bytes, d);
        let got_tx = avg_bps(r.summary.status.totals.tx_bytes, d);
        eprintln!("cap {CAP}: client received {got_rx:.0} bit/s, sent {got_tx:.0} bit/s");
        // the server's sending: paced at the cap
        assert!(
            got_rx > 0.7 * CAP as f64 && got_rx < 1.3 * CAP as f64,
            "received {got_rx}"
        );
        // ours: held back by the server's reading (socket buffers let a few MB through first)
        assert!(got_tx < 2.5 * CAP as f64, "sent {got_tx}");
        assert!(got_tx > 0.5 * CAP as f64, "sent {got_tx}");
        let rec = srv.next_session(Duration::from_secs(5));
        assert!(rec.result.is_ok(), "{rec:?}");
        srv.assert_idle();
    });
}

#[test]
fn udp_asked_faster_than_the_cap_is_sent_at_the_cap() {
    watchdog(60, || {
        let _x = exclusive();
        let srv = capped_server();
        for asked in [0u32, 400_000_000] {
            let mut c = client_cfg(srv.addr, Protocol::Udp, Direction::ServerTx, 3.0);
            c.remote_tx_speed = asked;
            let (r, _) = run_client(&c);
            let r = r.unwrap();
            let got = avg_bps(r.summary.status.totals.rx_bytes, r.summary.duration);
            eprintln!("asked {asked}: received {got:.0} bit/s (cap {CAP})");
            assert!(
                got > 0.7 * CAP as f64 && got < 1.3 * CAP as f64,
                "asked {asked}: received {got}"
            );
            // The client's summary shows the cap it got when it asked for a rate (issue 10);
            // asked unlimited, a cap cannot be told from what the server chose to send.
            let shown = r.server_sent_short();
            eprintln!("asked {asked}: summary shows the server sent {shown:?}");
            if asked == 0 {
                assert_eq!(shown, None);
            } else {
                let s = shown.expect("the cap is shown");
                assert!(s > 0.7 * CAP as f64 && s < 1.3 * CAP as f64, "shown {s}");
            }
            let _ = srv.next_session(Duration::from_secs(5));
        }
        // Below the cap: what was asked.
        let mut c = client_cfg(srv.addr, Protocol::Udp, Direction::ServerTx, 2.0);
        c.remote_tx_speed = 10_000_000;
        let (r, _) = run_client(&c);
        let r = r.unwrap();
        let got = avg_bps(r.summary.status.totals.rx_bytes, r.summary.duration);
        assert!(got > 7e6 && got < 13e6, "asked 10M: received {got}");
        assert_eq!(
            r.server_sent_short(),
            None,
            "sent what was asked: no cap shown"
        );
        srv.assert_idle();
    });
}
