//! Results leaving the process: --csv files, --syslog messages, the --metrics-file, run
//! through the built binary.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use btest::auth::AuthMethod;

use crate::util::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("btest-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&d);
    d
}

#[test]
fn client_csv_header_once_and_quoted_fields() {
    watchdog(40, || {
        let srv = start_server(server_cfg());
        let path = tmp("client.csv");
        for proto in ["tcp", "udp", "tcp"] {
            let o = btest_bin()
                .args([
                    "client",
                    &srv.addr.to_string(),
                    "--protocol",
                    proto,
                    "--duration",
                    "1s",
                ])
                .args(["--remote-tx-speed", "20M", "--csv"])
                .arg(&path)
                .output()
                .unwrap();
            assert_exit(&o, 0);
            let _ = srv.next_session(Duration::from_secs(3));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("timestamp,server,protocol,direction"));
        assert_eq!(text.matches("timestamp,").count(), 1, "header exactly once");
        assert!(lines[2].contains(",udp,receive,"), "{}", lines[2]);
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn server_csv_records_sessions_and_failures() {
    watchdog(40, || {
        let mut cfg = server_cfg();
        cfg.auth = AuthMethod::Md5;
        cfg.users = vec![("u".into(), "p".into())];
        let path = tmp("server.csv");
        let p = path.to_string_lossy().into_owned();
        let (mut child, addr) = spawn_server_bin(&[
            "--auth",
            "md5",
            "--user",
            "u",
            "--password",
            "p",
            "--csv",
            &p,
        ]);
        for pw in ["p", "wrong"] {
            let _ = btest_bin()
                .args([
                    "client",
                    &addr,
                    "--duration",
                    "1s",
                    "--user",
                    "u",
                    "--password",
                    pw,
                ])
                .output()
                .unwrap();
        }
        assert!(wait_until(Duration::from_secs(3), || {
            std::fs::read_to_string(&path)
                .map(|t| t.lines().count() >= 3)
                .unwrap_or(false)
        }));
        signal(child.id(), "-TERM");
        child.wait().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("timestamp,peer").count(), 1);
        // the failed login is a row of its own, with its error text (RFC 4180 quoting of
        // commas and quotes is unit-tested in export::csv)
        let last = text.split("\r\n").filter(|l| !l.is_empty()).last().unwrap();
        assert!(last.contains(",error,"), "{last}");
        assert!(last.contains("authentication failed (MD5)"), "{last}");
        let _ = std::fs::remove_file(&path);
    });
}

fn collect_syslog(sock: &UdpSocket, until: Duration) -> Vec<String> {
    let mut v = Vec::new();
    let t0 = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while t0.elapsed() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    v
}

/// RFC 3164 shape: <PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG
fn well_formed(m: &str) {
    let (pri, rest) = m
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .expect(m);
    let pri: u8 = pri.parse().expect(m);
    assert_eq!(pri / 8, 3, "facility daemon: {m}");
    let b = rest.as_bytes();
    assert!(
        b.len() > 16
            && b[3] == b' '
            && b[6] == b' '
            && b[9] == b':'
            && b[12] == b':'
            && b[15] == b' ',
        "timestamp: {m}"
    );
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(months.contains(&&rest[..3]), "{m}");
    let after = &rest[16..];
    let (host, tail) = after.split_once(' ').expect(m);
    assert!(!host.is_empty());
    assert!(tail.starts_with("btest[") && tail.contains("]: "), "{m}");
}

#[test]
fn syslog_from_server_and_client() {
    watchdog(40, || {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = collector.local_addr().unwrap().to_string();
        let (mut child, addr) = spawn_server_bin(&[
            "--auth",
            "ecsrp5",
            "--user",
            "u",
            "--password",
            "p",
            "--syslog",
            &target,
        ]);
        let ok = btest_bin()
            .args([
                "client",
                &addr,
                "--duration",
                "1s",
                "--user",
                "u",
                "--password",
                "p",
                "--syslog",
                &target,
            ])
            .output()
            .unwrap();
        assert_eq!(ok.status.code(), Some(0));
        let bad = btest_bin()
            .args([
                "client",
                &addr,
                "--duration",
                "1s",
                "--user",
                "eve",
                "--password",
                "x",
                "--syslog",
                &target,
            ])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(1));
        let msgs = collect_syslog(&collector, Duration::from_millis(800));
        signal(child.id(), "-TERM");
        child.wait().unwrap();
        for m in &msgs {
            well_formed(m);
        }
        let has = |s: &str| msgs.iter().any(|m| m.contains(s));
        assert!(has("session start") && has("user=u"), "{msgs:#?}");
        assert!(
            has("authentication failed") && has("user=eve") && has("peer=127.0.0.1"),
            "{msgs:#?}"
        );
        assert!(has("session end"), "{msgs:#?}");
        assert!(has("test start server="), "client start: {msgs:#?}");
        assert!(has("test end server="), "client end: {msgs:#?}");
        assert!(
            has("test failed server=") && has("EC-SRP5"),
            "client auth failure: {msgs:#?}"
        );
    });
}

#[test]
fn absent_syslog_collector_does_not_slow_or_fail() {
    watchdog(40, || {
        let srv = start_server(server_cfg());
        // a port with no listener: bind, note, close (deliberately: we need a dead port)
        let dead = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t0 = Instant::now();
        let o = btest_bin()
            .args([
                "client",
                &srv.addr.to_string(),
                "--duration",
                "1s",
                "--remote-tx-speed",
                "10M",
            ])
            .args(["--syslog", &dead.to_string()])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    });
}

fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect(line);
        let family = name.split('{').next().unwrap();
        assert!(typed.contains(family), "no TYPE before {line}");
        assert!(
            family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let v: f64 = value.parse().expect(line);
        assert!(v.is_finite(), "{line}");
        samples.push((name.to_string(), v));
    }
    samples
}

#[test]
fn metrics_file_parses_grows_and_is_never_half_written() {
    watchdog(40, || {
        let path = tmp("metrics.prom");
        let p = path.to_string_lossy().into_owned();
        let (mut child, addr) = spawn_server_bin(&["--metrics-file", &p]);
        assert!(wait_until(Duration::from_secs(3), || path.exists()));
        let first = parse_prometheus(&std::fs::read_to_string(&path).unwrap());
        let reader_path = path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut reads = 0;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::fs::read_to_string(&reader_path).unwrap();
                assert!(
                    t.trim_end().ends_with(|c: char| c.is_ascii_digit()),
                    "half-written file: {t:?}"
                );
                parse_prometheus(&t);
                reads += 1;
            }
            reads
        });
        for proto in ["tcp", "udp"] {
            let o = btest_bin()
                .args([
                    "client",
                    &addr,
                    "--protocol",
                    proto,
                    "--direction",
                    "both",
                    "--duration",
                    "1.5s",
                ])
                .args(["--local-tx-speed", "20M", "--remote-tx-speed", "20M"])
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0));
        }
        std::thread::sleep(Duration::from_millis(1300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 10);
        let last = parse_prometheus(&std::fs::read_to_string(&path).unwrap());
        let get =
            |v: &[(String, f64)], k: &str| v.iter().find(|(n, _)| n == k).map(|x| x.1).unwrap();
        assert_eq!(get(&first, "btest_sessions_started_total"), 0.0);
        assert_eq!(get(&last, "btest_sessions_started_total"), 2.0);
        assert!(get(&last, "btest_bytes_sent_total") > 1e6);
        assert!(get(&last, "btest_bytes_received_total") > 1e6);
        for (name, v) in &first {
            if name.contains("_total") {
                assert!(get(&last, name) >= *v, "{name} shrank");
            }
        }
        signal(child.id(), "-TERM");
        child.wait().unwrap();
        let _ = std::fs::remove_file(&path);
    });
}
