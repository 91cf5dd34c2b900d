//! Issue 10: `--http`, over a real server with a session running: the JSON API sees the live
//! session with its per-second rates and its quota usage, `/metrics` is Prometheus text, the
//! dashboard page renders it in a real browser (headless Chromium; skipped cleanly when none
//! is installed), and the history keeps the ended session.
//!
//! Issue 18 item 8, through the built binary: one source's silent connections take only its
//! share of the 16 slots, so another source is served at once; the Host header is checked
//! (421 for names not served, DNS rebinding included) and `--http-host` adds names.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use btest::engine::{Stop, StopReason};
use btest::http::{HttpServer, Limits};
use btest::wire::{Direction, Protocol};

use crate::util::*;

/// One request on a new connection, as a client that honours the 503's Retry-After would send
/// it: an answered connection keeps its slot while the server lingers for our close, so on a
/// busy machine a test's previous requests can still hold this source's share of 4 (seen under
/// `stress -c 2`, issue 20: a Host test got "too many connections from your address"). A
/// share that stays full for 10 s is returned as the 503 it is; the tests of the 503 itself
/// use `status_of`, which never retries.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let share_full = out.starts_with("HTTP/1.1 503 ")
            && out.ends_with("too many connections from your address, retry\n");
        if share_full && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return out;
    }
}

/// Status and body of a GET through [`exchange`].
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let out = exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
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
        // A UDP session beside it, for the loss chart and the aggregate of two.
        let udp = std::thread::spawn(move || {
            let mut c = client_cfg(addr, Protocol::Udp, Direction::Both, 5.0);
            c.local_tx_speed = 5_000_000;
            c.remote_tx_speed = 10_000_000;
            run_client(&c).0
        });
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
        // Issue 19: loss, RTT and CPU per session, the aggregate.
        assert!(s["rtt_ms_avg"].as_f64().is_some(), "TCP has an RTT: {body}");
        let last = hist.last().unwrap();
        assert!(
            last["local_cpu"].is_u64() && last.get("loss_pct").is_some(),
            "{body}"
        );
        let u = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["protocol"] == "udp")
            .unwrap_or_else(|| panic!("no UDP session: {body}"));
        assert!(u["loss_pct"].is_number(), "UDP counts datagrams: {u}");
        let (_, sm) = get(at, "/api/summary");
        let sm: serde_json::Value = serde_json::from_str(&sm).unwrap();
        let agg = sm["history"].as_array().unwrap();
        assert!(
            agg.iter().any(|h| h["tx_bps"].as_f64().unwrap() > 0.0),
            "the aggregate saw the sessions: {sm}"
        );
        let (_, q) = get(at, "/api/quotas");
        let q: serde_json::Value = serde_json::from_str(&q).unwrap();
        assert_eq!(q["quotas"][0]["key"], "addr:127.0.0.1", "{q}");
        assert!(q["quotas"][0]["used"].as_u64().unwrap() > 1_000_000, "{q}");
        let (st, m) = get(at, "/metrics");
        assert_eq!(st, 200);
        assert!(m.contains("btest_sessions_active 2"), "{m}");
        assert_eq!(get(at, "/nope").0, 404);
        if let Some(b) = chromium() {
            let url = format!("http://{at}/");
            let o = std::process::Command::new(&b)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--virtual-time-budget=3000",
                    "--dump-dom",
                    &url,
                ])
                .output()
                .unwrap();
            let dom = String::from_utf8_lossy(&o.stdout);
            screenshot(&b, &url, "dashboard");
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
        }
        assert!(client.join().unwrap().is_ok());
        assert!(udp.join().unwrap().is_ok());
        let _ = srv.next_session(Duration::from_secs(5));
        let _ = srv.next_session(Duration::from_secs(5));
        let (_, h) = get(at, "/api/history");
        assert!(h.contains(r#""end_reason":"client_closed""#), "{h}");
        assert!(
            h.contains(r#""tx_avg_bps":"#),
            "ended sessions with averages: {h}"
        );
        if let Some(b) = chromium() {
            screenshot(&b, &format!("http://{at}/"), "dashboard-ended");
        }
        stop.trigger(StopReason::Shutdown);
        web.join();
        drop(srv);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A picture to look at (issue 19): the page at `url` as
/// target/tmp/screenshots/NAME.png, after 3 s of virtual time (three refreshes).
pub fn screenshot(chromium: &str, url: &str, name: &str) -> std::path::PathBuf {
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let o = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        png.metadata().is_ok_and(|m| m.len() > 10_000),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("screenshot: {}", png.display());
    png
}

/// `btest server --listen 127.0.0.1:0 --http 127.0.0.1:0 EXTRA...` as a process, killed on
/// drop (also when the test panics).
struct WebServer {
    /// Held for its drop: the server is killed with it.
    _child: Proc,
    http: SocketAddr,
}

impl WebServer {
    fn start(extra: &[&str]) -> WebServer {
        let base = udp_base().to_string();
        let mut child = Proc::new(
            btest_bin()
                .args([
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--udp-port-from",
                    &base,
                ])
                .args(["--http", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut http = None;
        let mut line = String::new();
        while http.is_none() {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("server exited before serving http");
            }
            http = line
                .trim()
                .strip_prefix("btest: http on http://")
                .and_then(|a| a.strip_suffix('/'))
                .map(|a| a.parse::<SocketAddr>().unwrap());
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        WebServer {
            _child: child,
            http: http.unwrap(),
        }
    }
}

/// One request with this Host over `s`; the status code (0 if none came).
fn status_of(mut s: TcpStream, path: &str, host: &str) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A server over its cap answers 503 at the accept and closes without reading: the write
    // may then meet the close (EPIPE); the answer is still there to read.
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// 16 connections from 127.0.0.1 that send nothing (the issue's attack), held open.
/// Returns them with how many were answered 503: those come at once from the accept thread,
/// so they are counted for up to 2 s or until `expect` have come; the rest are held by the
/// server until its 5 s head deadline.
fn silent_flood(at: SocketAddr, expect: usize) -> (Vec<TcpStream>, usize) {
    let conns: Vec<TcpStream> = (0..16)
        .map(|_| connect_from("127.0.0.1", at).unwrap())
        .collect();
    let mut answered = vec![false; conns.len()];
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while refused < expect && Instant::now() < deadline {
        for (c, done) in conns.iter().zip(answered.iter_mut()) {
            if *done {
                continue;
            }
            c.set_nonblocking(true).unwrap();
            let mut head = [0u8; 12];
            if let Ok(n) = (&*c).read(&mut head) {
                *done = true;
                if n == 12 && &head[9..12] == b"503" {
                    refused += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (conns, refused)
}

#[test]
fn sixteen_silent_connections_from_one_address_leave_others_served() {
    watchdog(60, || {
        // The issue's finding, with the share turned off (max_per_source = max_connections):
        // 16 silent connections from 127.0.0.1 take every slot, 127.0.0.2 gets 503.
        let web = HttpServer::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .spawn(
                std::sync::Arc::new(|_: &btest::http::Request| {
                    btest::http::Response::text(200, "ok\n")
                }),
                Limits {
                    max_per_source: 16,
                    ..Limits::default()
                },
                Stop::new(),
            )
            .unwrap();
        let at = web.local_addr();
        let (_held, refused) = silent_flood(at, 0);
        assert_eq!(refused, 0);
        assert!(wait_until(Duration::from_secs(2), || web.connections() == 16));
        let st = status_of(connect_from("127.0.0.2", at).unwrap(), "/", &at.to_string());
        eprintln!("share off: 16 silent from 127.0.0.1, a GET from 127.0.0.2 got {st}");
        assert_eq!(st, 503);
        drop(_held);
        drop(web);

        // The binary, default limits (4 of 16 per source).
        let srv = WebServer::start(&[]);
        let at = srv.http;
        let host = at.to_string();
        let t = Instant::now();
        let (held, refused) = silent_flood(at, 12);
        eprintln!(
            "share on: 16 silent connections from 127.0.0.1: {} held, {refused} answered 503 \
             ({:?})",
            16 - refused,
            t.elapsed()
        );
        assert_eq!(refused, 12, "a source holds 4 of the 16 slots");
        // The flooding address itself gets 503 while it holds its share...
        assert_eq!(
            status_of(
                connect_from("127.0.0.1", at).unwrap(),
                "/api/summary",
                &host
            ),
            503
        );
        // ...another address is served at once, several times over: three times, fewer than
        // its own share of 4, since an answered connection keeps its slot while the server
        // lingers for the close and a busy machine can still hold the earlier ones (the 5th of
        // 5 got 503 in 1 make test run of 5 under stress -c 2).
        for i in 0..3 {
            let t = Instant::now();
            let st = status_of(
                connect_from("127.0.0.2", at).unwrap(),
                "/api/summary",
                &host,
            );
            let took = t.elapsed();
            eprintln!("share on: GET /api/summary from 127.0.0.2 #{i}: {st} in {took:?}");
            assert_eq!(st, 200);
            assert!(took < Duration::from_secs(1), "took {took:?}");
        }
        drop(held);
    });
}

#[test]
fn host_header_is_checked_and_http_host_adds_names() {
    watchdog(60, || {
        let srv = WebServer::start(&[]);
        let at = srv.http;
        let port = at.port();
        let get = |host: &str| {
            let out = exchange(
                at,
                &format!("GET /api/summary HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            );
            out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
        };
        assert_eq!(get(&at.to_string()), 200);
        assert_eq!(get("127.0.0.1"), 200);
        assert_eq!(get(&format!("localhost:{port}")), 200);
        assert_eq!(get("evil.example"), 421);
        // DNS rebinding: the attacker's name now resolves to us; the Host is still its name.
        assert_eq!(get(&format!("attacker.example:{port}")), 421);
        assert_eq!(get("127.0.0.2"), 421);
        // The body names the refused host, escaped, and nothing of the API.
        let out = exchange(
            at,
            "GET /api/sessions HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        );
        assert!(
            out.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
            "{out}"
        );
        assert!(
            out.contains("'evil.example'") && !out.contains("sessions\""),
            "{out}"
        );
        // HTTP/1.1 without Host: 400.
        let out = exchange(at, "GET /api/summary HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        drop(srv);

        let srv = WebServer::start(&["--http-host", "evil.example"]);
        let at = srv.http;
        let get = |host: &str| {
            let out = exchange(
                at,
                &format!("GET /api/summary HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            );
            out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
        };
        assert_eq!(get("evil.example"), 200);
        assert_eq!(get(&format!("EVIL.example:{}", at.port())), 200);
        assert_eq!(get(&at.to_string()), 200);
        assert_eq!(get(&format!("attacker.example:{}", at.port())), 421);
    });
}
