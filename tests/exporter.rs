//! Issue 22: `btest exporter` through the built binaries, over HTTP on loopback: a `btest
//! server`, an exporter of a five-target file (tests of 1-3 s), scrapes of /probe (figures,
//! the cache and its age, the scrape timeout shortening a test, the deadline stopping one,
//! 400, 404, 503 while --concurrency tests run) and /metrics counting them. About 8 s.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::*;

/// One GET; (status, headers, body). The exporter closes after each answer.
fn get(addr: &str, path: &str, scrape_timeout: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra = scrape_timeout
        .map(|t| format!("X-Prometheus-Scrape-Timeout-Seconds: {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    (status, head.to_string(), body.to_string())
}

/// The value of the sample whose name and labels are exactly `series`.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn spawn_exporter(file: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Proc::new(
        btest_bin()
            .args(["exporter", "--listen", "127.0.0.1:0", "--targets"])
            .arg(file)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the exporter exited");
    }
    let addr = line.rsplit(' ').next().unwrap().trim().to_string();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            eprintln!("exporter: {l}");
        }
    });
    (child, addr)
}

#[test]
fn probes_are_bounded_cached_refused_and_counted() {
    watchdog(120, || {
        let (_server, a) = spawn_server_bin(&[]);
        let dir = std::env::temp_dir().join(format!("btest-exporter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets.txt");
        std::fs::write(
            &file,
            format!(
                "defaults --duration 1s --latency-idle 200ms\n\
                 link {a} --direction both\n\
                 slow {a} --duration 3s\n\
                 other {a}\n\
                 hdr {a} --duration 5s\n\
                 late {a} --latency-idle 3s\n"
            ),
        )
        .unwrap();
        let (mut exporter, x) =
            spawn_exporter(&file, &["--concurrency", "1", "--min-interval", "60s"]);

        // A test: figures both ways, the idle RTT, a fresh result.
        let (code, _, body) = get(&x, "/probe?target=link", Some("10"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(value(&body, "btest_probe_success"), Some(1.0), "{body}");
        let rx = value(&body, "btest_rx_bits_per_second").unwrap();
        assert!(rx > 1e6, "{body}");
        assert!(
            value(&body, "btest_tx_bits_per_second").unwrap() > 1e6,
            "{body}"
        );
        let d = value(&body, "btest_test_duration_seconds").unwrap();
        assert!((0.5..2.5).contains(&d), "a 1 s test: {body}");
        let idle = value(&body, "btest_rtt_seconds{phase=\"idle\",stat=\"min\"}");
        assert!(idle.is_some_and(|v| v > 0.0 && v < 1.0), "{body}");
        assert_eq!(
            value(&body, "btest_result_age_seconds"),
            Some(0.0),
            "{body}"
        );
        assert_eq!(value(&body, "btest_result_cached"), Some(0.0), "{body}");
        assert!(
            body.contains("# TYPE btest_probe_success gauge\n"),
            "{body}"
        );

        // Again within --min-interval: the same result from the cache, with its age.
        std::thread::sleep(Duration::from_millis(100));
        let (code, _, again) = get(&x, "/probe?target=link", None);
        assert_eq!(code, 200, "{again}");
        assert_eq!(value(&again, "btest_result_cached"), Some(1.0), "{again}");
        assert!(
            value(&again, "btest_result_age_seconds").unwrap() > 0.0,
            "{again}"
        );
        assert_eq!(
            value(&again, "btest_rx_bits_per_second"),
            Some(rx),
            "{again}"
        );

        // Refusals: no target, a target not in the file, a credential in the URL.
        assert_eq!(get(&x, "/probe", None).0, 400);
        assert_eq!(get(&x, "/probe?target=link&password=x", None).0, 400);
        let (code, _, body) = get(&x, "/probe?target=nope", None);
        assert_eq!(code, 404, "{body}");
        assert!(body.contains("unknown target 'nope'"), "{body}");

        // While the one allowed test runs, another target is answered 503 with Retry-After.
        let x2 = x.clone();
        let slow = std::thread::spawn(move || get(&x2, "/probe?target=slow", None));
        assert!(
            wait_until(Duration::from_secs(10), || {
                value(&get(&x, "/metrics", None).2, "btest_exporter_tests_running") == Some(1.0)
            }),
            "the slow test never showed as running"
        );
        let (code, head, body) = get(&x, "/probe?target=other", None);
        assert_eq!(code, 503, "{head}\n{body}");
        assert!(head.contains("\r\nRetry-After: "), "{head}");
        let (code, _, body) = slow.join().unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(value(&body, "btest_probe_success"), Some(1.0), "{body}");

        // The scrape's timeout shortens a 5 s test to fit: 4 s less the margin and the idle second leaves 1.3 s.
        let (code, _, body) = get(&x, "/probe?target=hdr", Some("4"));
        assert_eq!(code, 200, "{body}");
        let d = value(&body, "btest_test_duration_seconds").unwrap();
        assert!(
            d < 2.5,
            "a 5 s target under a 4 s scrape timeout ran {d} s: {body}"
        );

        // A probe that cannot end by its deadline (an idle second of 3 s under a 2 s scrape
        // timeout: 1.5 s) is stopped there and says so.
        let (code, _, body) = get(&x, "/probe?target=late", Some("2"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(value(&body, "btest_probe_success"), Some(0.0), "{body}");
        assert!(
            body.contains("btest_probe_error{phase=\"data\",reason=\"deadline\"} 1\n"),
            "{body}"
        );
        let wall = value(&body, "btest_probe_duration_seconds").unwrap();
        assert!(
            wall < 2.9,
            "stopped at 1.5 s, not after the 3 s idle second: {body}"
        );

        // /metrics counted all of it (this request is counted after its answer).
        let (code, head, m) = get(&x, "/metrics", None);
        assert_eq!(code, 200);
        assert!(head.contains("version=0.0.4"), "{head}");
        for (series, want) in [
            (
                "btest_exporter_requests_total{path=\"/probe\",code=\"200\"}",
                5.0,
            ),
            (
                "btest_exporter_requests_total{path=\"/probe\",code=\"400\"}",
                2.0,
            ),
            (
                "btest_exporter_requests_total{path=\"/probe\",code=\"404\"}",
                1.0,
            ),
            (
                "btest_exporter_requests_total{path=\"/probe\",code=\"503\"}",
                1.0,
            ),
            (
                "btest_exporter_tests_total{mode=\"test\",outcome=\"success\"}",
                3.0,
            ),
            (
                "btest_exporter_tests_total{mode=\"test\",outcome=\"failure\"}",
                1.0,
            ),
            ("btest_exporter_cache_hits_total", 1.0),
            ("btest_exporter_tests_running", 0.0),
            ("btest_exporter_targets", 5.0),
        ] {
            assert_eq!(value(&m, series), Some(want), "{series}\n{m}");
        }
        assert!(m.contains("btest_exporter_build_info{version=\""), "{m}");

        // One source holds at most 16 connections: the 17th from 127.0.0.3 is answered 503 by
        // the accept thread, while 127.0.0.2 is still served. From addresses no earlier
        // request used: an answered connection keeps its slot while the exporter lingers for
        // the client's close, and under load the last /metrics GET from 127.0.0.1 still held
        // one, so the 16th held connection got the 503 and the 17th a slot (a CI run).
        let xa: std::net::SocketAddr = x.parse().unwrap();
        let held: Vec<TcpStream> = (0..16)
            .map(|_| connect_from("127.0.0.3", xa).unwrap())
            .collect();
        let mut over = connect_from("127.0.0.3", xa).unwrap();
        let mut answer = String::new();
        over.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("from your address"), "{answer}");
        let mut other = connect_from("127.0.0.2", xa).unwrap();
        write!(other, "GET /metrics HTTP/1.1\r\nHost: {x}\r\n\r\n").unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        drop(held);

        // SIGTERM ends it promptly.
        signal(exporter.id(), "-TERM");
        assert!(
            wait_until(Duration::from_secs(5), || exporter
                .try_wait()
                .unwrap()
                .is_some()),
            "the exporter did not exit on SIGTERM"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// `mode=speed-test` on a target's line makes its probe a speed test: the grade, RPM and
/// its rating, and per phase the rates, latency figures, the increase over idle and the
/// one-way delays (our server stamps its echo); a speed test that cannot fit the scrape's
/// timeout is refused with the time it needs. About 6 s.
#[test]
fn a_speed_test_target_answers_grade_rpm_and_phases() {
    watchdog(60, || {
        let (_server, a) = spawn_server_bin(&[]);
        let dir = std::env::temp_dir().join(format!("btest-exporter-st-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets.txt");
        std::fs::write(
            &file,
            format!(
                "st {a} mode=speed-test --phases idle,download,cooldown --idle 1s --phase 2s \
                 --cooldown 1s --probe-interval 20ms --remote-tx-speed 50M\n"
            ),
        )
        .unwrap();
        let (_exporter, x) = spawn_exporter(&file, &["--min-interval", "0"]);
        let (code, _, body) = get(&x, "/probe?target=st", Some("20"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(value(&body, "btest_probe_success"), Some(1.0), "{body}");
        assert!(
            body.contains("btest_bufferbloat_grade_info{grade=\""),
            "{body}"
        );
        assert!(
            value(&body, "btest_rpm{probe=\"combined\"}").is_some_and(|v| v > 0.0),
            "{body}"
        );
        assert!(body.contains("btest_rpm_rating_info{rating=\""), "{body}");
        let down = value(
            &body,
            "btest_phase_bits_per_second{phase=\"download\",direction=\"rx\"}",
        )
        .unwrap();
        assert!((10e6..=60e6).contains(&down), "50M asked: {body}");
        for phase in ["idle", "download", "cooldown"] {
            let iqm = value(
                &body,
                &format!("btest_phase_latency_seconds{{phase=\"{phase}\",stat=\"iqm\"}}"),
            );
            assert!(iqm.is_some_and(|v| v > 0.0 && v < 1.0), "{phase}: {body}");
            for dir in ["up", "down"] {
                let s =
                    format!("btest_phase_one_way_seconds{{phase=\"{phase}\",direction=\"{dir}\"}}");
                assert!(value(&body, &s).is_some(), "{s}: {body}");
            }
        }
        assert!(
            value(
                &body,
                "btest_phase_latency_increase_seconds{phase=\"download\"}"
            )
            .is_some(),
            "{body}"
        );
        // The same target under a 3 s scrape timeout: too short for three phases.
        let (code, _, body) = get(&x, "/probe?target=st", Some("3"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(value(&body, "btest_probe_success"), Some(0.0), "{body}");
        assert!(body.contains("needs at least"), "{body}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
