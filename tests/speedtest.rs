//! Issue 22: `btest speed-test` against our server on loopback, through the built binary, with
//! short phases: the record structure (one `phase` record per phase, then `speed_test`), the
//! figures' sanity (orders, ranges, grade and rating words: never a rate), the text, the CSV
//! rows and the HTML report; `--congestion` for the client and the speed test.
//!
//! Probes go every 20 ms with one class: today's echo answers 50 probes/s per source.

use crate::util::*;

const SHORT: &[&str] = &[
    "--idle",
    "1s",
    "--phase",
    "2s",
    "--cooldown",
    "1s",
    "--probe-interval",
    "20ms",
    "--latency",
    "echo",
    "--connection-count",
    "2",
];

fn num(v: &serde_json::Value, k: &str) -> Option<f64> {
    v.get(k).and_then(|x| x.as_f64())
}

/// The `latency` object's figures are ordered low <= p50 <= p90 <= p99 <= high, the means
/// between low and high, counts consistent.
fn check_latency(l: &serde_json::Value, what: &str) {
    let count = l["count"].as_u64().unwrap();
    let sent = l["sent"].as_u64().unwrap();
    let lost = l["lost"].as_u64().unwrap();
    assert!(lost <= sent, "{what}: lost {lost} of {sent}");
    if count == 0 {
        assert!(l["iqm_ms"].is_null(), "{what}: {l}");
        return;
    }
    let g = |k: &str| num(l, k).unwrap_or_else(|| panic!("{what}: {k} in {l}"));
    let (lo, hi) = (g("low_ms"), g("high_ms"));
    assert!(lo >= 0.0 && lo <= hi, "{what}: {l}");
    assert!(
        lo <= g("p50_ms") && g("p50_ms") <= g("p90_ms"),
        "{what}: {l}"
    );
    assert!(
        g("p90_ms") <= g("p99_ms") && g("p99_ms") <= hi,
        "{what}: {l}"
    );
    for k in ["mean_ms", "iqm_ms", "trimmed95_ms"] {
        assert!(lo <= g(k) + 1e-3 && g(k) <= hi + 1e-3, "{what}: {k} {l}");
    }
    assert!(
        g("jitter_ms") >= 0.0 && g("jitter_ms") <= hi - lo + 1e-3,
        "{what}: {l}"
    );
    // Loopback: every reply well under a second even on a loaded 2-core machine.
    assert!(hi < 1000.0, "{what}: {l}");
}

/// The allowed congestion control an unprivileged user may pick (the first listed).
fn allowed_cc() -> Option<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
        .ok()?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

#[test]
fn json_records_csv_and_report() {
    watchdog(60, || {
        let (_srv, addr) = spawn_server_bin(&[]);
        let dir = std::env::temp_dir().join(format!("btest-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("st.csv");
        let html = dir.join("st.html");
        let cc = allowed_cc();
        let mut cmd = btest_bin();
        cmd.args(["speed-test", &addr, "--json"]).args(SHORT);
        cmd.arg("--csv").arg(&csv).arg("--report").arg(&html);
        if let Some(c) = &cc {
            cmd.args(["--congestion", c]);
        }
        let o = cmd.output().unwrap();
        assert_exit(&o, 0);
        let recs = json_lines(&o.stdout);
        let phases: Vec<&serde_json::Value> =
            recs.iter().filter(|r| r["type"] == "phase").collect();
        let words: Vec<&str> = phases
            .iter()
            .map(|p| p["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            words,
            ["idle", "download", "upload", "bidirectional", "cooldown"]
        );
        let last = recs.last().unwrap();
        assert_eq!(last["type"], "speed_test", "{last}");
        let mut prev_start = -1.0;
        for p in &phases {
            let w = p["phase"].as_str().unwrap();
            let start = num(p, "start_s").unwrap();
            assert!(start > prev_start, "{p}");
            prev_start = start;
            assert!(num(p, "duration_s").unwrap() > 0.5, "{p}");
            check_latency(&p["latency"], w);
            // Our server stamps its echo (v2): one-way figures in every phase, and their
            // increases over idle in the others.
            let owd = &p["owd"];
            for k in ["up_iqm_ms", "down_iqm_ms", "up_mean_ms", "down_mean_ms"] {
                assert!(num(owd, k).is_some_and(|v| v >= -1.0), "{k}: {p}");
            }
            let inc = num(owd, "down_increase_ms");
            assert_eq!(inc.is_none(), w == "idle", "{p}");
            let classes = p["classes"].as_array().unwrap();
            assert_eq!(classes.len(), 1, "{p}");
            assert_eq!(classes[0]["name"], "be");
            assert_eq!(classes[0]["dscp"], 0);
            let loaded = !matches!(w, "idle" | "cooldown");
            assert_eq!(
                p["rx_bps"].is_null(),
                !matches!(w, "download" | "bidirectional"),
                "{p}"
            );
            assert_eq!(
                p["tx_bps"].is_null(),
                !matches!(w, "upload" | "bidirectional"),
                "{p}"
            );
            if loaded {
                // Some data moved each way the phase loads (not a rate: any amount).
                for k in ["rx_bps", "tx_bps"] {
                    if let Some(b) = num(p, k) {
                        assert!(b > 0.0, "{w}: {k} {p}");
                    }
                }
                assert!(p["increase_ms"].is_number(), "{p}");
                // A 2 s phase: its first second is the ramp, so replies came but not all
                // probes count in the figures.
                assert!(p["latency"]["count"].as_u64().unwrap() > 0, "{p}");
            } else {
                assert!(p["rx_bps"].is_null() && p["tx_bps"].is_null(), "{p}");
            }
            assert_eq!(p["increase_ms"].is_null(), w == "idle", "{p}");
            // The idle phase, before any session, keeps to 40 probes/s (our echo answers a
            // source without a session 50/s): 25 ms for one class; the rest run at 20 ms.
            let want = if w == "idle" { 25.0 } else { 20.0 };
            assert!(
                (num(p, "probe_interval_ms").unwrap() - want).abs() < 1e-6,
                "{p}"
            );
        }
        let grades = ["A+", "A", "B", "C", "D", "F"];
        assert!(grades.contains(&last["grade"].as_str().unwrap()), "{last}");
        assert!(num(last, "grade_increase_ms").is_some(), "{last}");
        let rpm = num(last, "rpm").unwrap();
        assert!(rpm > 0.0, "{last}");
        let ratings = ["Poor", "Fair", "Good", "Excellent"];
        assert!(
            ratings.contains(&last["rating"].as_str().unwrap()),
            "{last}"
        );
        // 2 s phases have one steady second: fewer than 4 intervals is Low by definition.
        assert_eq!(last["confidence"], "Low", "{last}");
        assert!(num(last, "rpm_foreign").unwrap() > 0.0 && num(last, "rpm_self").unwrap() > 0.0);
        assert!(num(last, "download_bps").unwrap() > 0.0);
        assert!(num(last, "upload_bps").unwrap() > 0.0);
        assert_eq!(last["rtt_method"], "echo");
        assert!(last["tcp-download"]
            .as_str()
            .unwrap()
            .contains("local-cpu-load:"));
        assert!(last["tcp-upload"].is_string() && last["udp-download"].is_null());
        let ping = last["ping-min-avg-max"].as_str().unwrap();
        assert_eq!(ping.split('/').count(), 3, "{ping}");
        assert!(last["loss"].as_str().unwrap().contains('%'));
        if let Some(c) = &cc {
            assert_eq!(last["congestion"].as_str(), Some(c.as_str()), "{last}");
        }
        // CSV: a header, a row per phase, the overall row.
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[0].starts_with("timestamp,server,row,"), "{text}");
        assert!(
            lines[1].contains(",idle,") && lines[6].contains(",overall,"),
            "{text}"
        );
        let cols = lines[0].split(',').count();
        assert!(
            lines[1..].iter().all(|l| l.split(',').count() == cols),
            "{text}"
        );
        // HTML: one well-formed file with the five shaded phases.
        let page = std::fs::read_to_string(&html).unwrap();
        btest::export::html::check_well_formed(&page).unwrap();
        assert_eq!(page.matches("data-phase=").count() % 5, 0, "shaded bands");
        assert!(page.contains("data-phase=\"bidirectional\""));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn text_output_and_a_phase_subset() {
    watchdog(40, || {
        let (_srv, addr) = spawn_server_bin(&[]);
        let o = btest_bin()
            .args(["speed-test", &addr, "--phases", "idle,download"])
            .args(SHORT)
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let out = String::from_utf8_lossy(&o.stdout);
        for want in [
            "speed-test ",
            "\nidle\n",
            "\ndownload ",
            "bufferbloat grade",
            "RPM",
            "confidence Low",
            "ping-min-avg-max:",
            "tcp-download:",
            "one-way     up ",
            "one-way increase   download up ",
        ] {
            assert!(out.contains(want), "{want:?} missing in:\n{out}");
        }
        assert!(!out.contains("\nupload "), "{out}");
        assert!(!out.contains("tcp-upload:"), "{out}");
    });
}

#[test]
fn usage_errors_keep_the_input() {
    for (args, want) in [
        (&["speed-test", "h", "--probe-interval", "1ms"][..], "'1ms'"),
        (
            &["speed-test", "h", "--phases", "idle,sideways"][..],
            "'sideways'",
        ),
        (&["speed-test", "h", "--probe-dscp", "ef,xx"][..], "'xx'"),
        (
            &["speed-test", "h", "--direction", "both"][..],
            "--direction",
        ),
        (&["speed-test"][..], "missing HOST"),
        (&["client", "h", "--congestion", "a b"][..], "'a b'"),
    ] {
        let o = btest_bin().args(args).output().unwrap();
        assert_exit(&o, 2);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn unknown_congestion_control_is_a_clear_error() {
    if !std::path::Path::new("/proc/sys/net/ipv4/tcp_available_congestion_control").exists() {
        skip("no /proc/sys/net/ipv4/tcp_available_congestion_control (not Linux)");
        return;
    }
    watchdog(30, || {
        let (_srv, addr) = spawn_server_bin(&[]);
        let o = btest_bin()
            .args(["client", &addr, "--duration", "1s", "--latency", "off"])
            .args(["--congestion", "nosuchcc"])
            .output()
            .unwrap();
        assert_exit(&o, 2);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("--congestion nosuchcc") && e.contains("tcp_available_congestion_control"),
            "{e}"
        );
    });
}

#[test]
fn fleet_target_in_speed_test_mode() {
    watchdog(60, || {
        let (_srv, addr) = spawn_server_bin(&[]);
        let dir = std::env::temp_dir().join(format!("btest-st-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets");
        std::fs::write(
            &file,
            format!(
                "st {addr} mode=speed-test --phases idle,download,upload {}\n\
                 plain {addr} --duration 1s --latency off\n",
                SHORT.join(" ")
            ),
        )
        .unwrap();
        let o = btest_bin()
            .args(["fleet", file.to_str().unwrap(), "--json", "--retries", "0"])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let recs = json_lines(&o.stdout);
        let st = recs.iter().find(|r| r["name"] == "st").unwrap();
        assert!(
            ["A+", "A", "B", "C", "D", "F"].contains(&st["grade"].as_str().unwrap()),
            "{st}"
        );
        assert!(num(st, "rpm").unwrap() > 0.0, "{st}");
        assert!(
            st["rating"].is_string() && st["confidence"] == "Low",
            "{st}"
        );
        assert!(num(st, "down_bps").unwrap() > 0.0 && num(st, "up_bps").unwrap() > 0.0);
        let plain = recs.iter().find(|r| r["name"] == "plain").unwrap();
        assert!(
            plain["grade"].is_null() && plain["rpm"].is_null(),
            "{plain}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The probe rate cap: 5 ms probes (122 kbit/s of 76-byte datagrams: echo v2's 48 bytes and
/// the IPv4 and UDP headers) against a 500 kbit/s download exceed 5 % of it (25 kbit/s), so
/// after the download the interval widens to about 76·8 / 25 000 s = 24.3 ms (of the rate
/// measured) and a note says so.
#[test]
fn probe_interval_widens_to_five_percent_of_the_capacity() {
    watchdog(40, || {
        let (_srv, addr) = spawn_server_bin(&[]);
        let o = btest_bin()
            .args(["speed-test", &addr, "--json", "--phases", "download,upload"])
            .args([
                "--phase",
                "2s",
                "--probe-interval",
                "5ms",
                "--latency",
                "echo",
            ])
            .args(["--remote-tx-speed", "500k", "--local-tx-speed", "500k"])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let recs = json_lines(&o.stdout);
        assert_eq!(num(&recs[0], "probe_interval_ms"), Some(5.0), "{}", recs[0]);
        // 608 bits per probe in 5 % of the download's measured rate (TCP payload, a little
        // above the 500k asked).
        let down = num(&recs[0], "rx_bps").unwrap();
        let want = 608.0 / (0.05 * down) * 1000.0;
        let widened = num(&recs[1], "probe_interval_ms").unwrap();
        assert!(
            widened > 5.0 && (widened - want).abs() < 0.01 * want,
            "{want} {}",
            recs[1]
        );
        let last = recs.last().unwrap();
        assert_eq!(num(last, "probe_interval_ms"), Some(widened));
        let notes = last["notes"].to_string();
        assert!(
            notes.contains("probe interval widened from 5 ms"),
            "{notes}"
        );
    });
}
