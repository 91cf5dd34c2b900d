//! Issue 10: `--http`, over a real server with a session running: the JSON API sees the live
//! session with its per-second rates and its quota usage, `/metrics` is Prometheus text, the
//! dashboard page renders it in a real browser (headless Chromium; skipped cleanly when none
//! is installed), and the history keeps the ended session.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use btest::engine::{Stop, StopReason};
use btest::http::{HttpServer, Limits};
use btest::wire::{Direction, Protocol};

use crate::util::*;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

#[test]
fn the_api_metrics_and_dashboard_show_a_live_session() {
    watchdog(120, || {
        let _x = exclusive();
        let mut cfg = server_cfg();
        cfg.source_limits = vec!["addr sessions=5 day=100G".parse().unwrap()];
        let dir = std::env::temp_dir().join(format!("btest-http-{}", std::process::id()));
        cfg.state_dir = Some(dir.clone());
        let srv = start_server(cfg);
        let stop = Stop::new();
        let web = HttpServer::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .spawn(srv.h().http_handler(), Limits::default(), stop.clone())
            .unwrap();
        let at = web.local_addr();
        let addr = srv.addr;
        let client = std::thread::spawn(move || {
            let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 6.0);
            c.local_tx_speed = 20_000_000;
            c.remote_tx_speed = 30_000_000;
            run_client(&c).0
        });
        assert!(wait_until(Duration::from_secs(5), || srv
            .stats()
            .active_sessions
            == 1));
        std::thread::sleep(Duration::from_millis(2500));
        let (st, body) = get(at, "/api/sessions");
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let s = &v["sessions"][0];
        assert_eq!(s["protocol"], "tcp", "{body}");
        assert_eq!(s["direction"], "both", "{body}");
        let hist = s["history"].as_array().unwrap();
        assert!(!hist.is_empty(), "{body}");
        // The server sends at the client's --remote-tx-speed (30M), receives at 20M.
        let tx = s["tx_bps"].as_f64().unwrap();
        let rx = s["rx_bps"].as_f64().unwrap();
        assert!(tx > 20e6 && tx < 40e6, "tx {tx}: {body}");
        assert!(rx > 13e6 && rx < 27e6, "rx {rx}: {body}");
        let (_, q) = get(at, "/api/quotas");
        let q: serde_json::Value = serde_json::from_str(&q).unwrap();
        assert_eq!(q["quotas"][0]["key"], "addr:127.0.0.1", "{q}");
        assert!(q["quotas"][0]["used"].as_u64().unwrap() > 1_000_000, "{q}");
        let (st, m) = get(at, "/metrics");
        assert_eq!(st, 200);
        assert!(m.contains("btest_sessions_active 1"), "{m}");
        assert_eq!(get(at, "/nope").0, 404);
        if let Some(b) = chromium() {
            let o = std::process::Command::new(&b)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--virtual-time-budget=3000",
                    "--dump-dom",
                    &format!("http://{at}/"),
                ])
                .output()
                .unwrap();
            let dom = String::from_utf8_lossy(&o.stdout);
            assert!(
                dom.contains("data-updated"),
                "the page never refreshed: {dom}"
            );
            assert!(
                dom.contains("session-1"),
                "no card for the live session: {dom}"
            );
            assert!(dom.contains("addr:127.0.0.1"), "no quota bar: {dom}");
            eprintln!("{b}: the dashboard rendered the session and its quota");
        } else {
            eprintln!("skipped the browser check: no chromium installed");
        }
        assert!(client.join().unwrap().is_ok());
        let _ = srv.next_session(Duration::from_secs(5));
        let (_, h) = get(at, "/api/history");
        assert!(h.contains(r#""end_reason":"client_closed""#), "{h}");
        stop.trigger(StopReason::Shutdown);
        web.join();
        drop(srv);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
