//! The built binary: help, usage errors with the input echoed, exit codes 0/1/2, --json
//! output that is pure NDJSON, and the server's SIGTERM handling.

use std::time::{Duration, Instant};

use crate::util::*;

/// Runs `btest ARGS` and returns its stdout; it must exit 0 with nothing on stderr.
fn help_of(args: &[&str]) -> String {
    let o = btest_bin().args(args).output().unwrap();
    assert_exit(&o, 0);
    assert!(
        o.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn help_and_version() {
    let client_only = [
        "--protocol",
        "--direction",
        "--connection-count",
        "--remote-udp-tx-size",
    ];
    let server_only = [
        "--listen",
        "--udp-port-from",
        "--max-sessions",
        "--metrics-file",
    ];
    let overview = help_of(&["--help"]);
    assert_eq!(help_of(&["-h"]), overview);
    assert!(
        overview.contains("btest client --help") && overview.contains("btest server --help"),
        "{overview}"
    );
    for opt in client_only.iter().chain(&server_only) {
        assert!(!overview.contains(opt), "the overview lists {opt}");
    }
    for opt in ["--verbose", "--quiet", "--help", "--version"] {
        assert!(overview.contains(opt), "the overview lacks {opt}");
    }
    let client = help_of(&["client", "--help"]);
    for args in [
        &["client", "-h"][..],
        &["-c", "--help"],
        &["-c", "-h"],
        &["client", "192.0.2.1", "--help"],
        &["client", "192.0.2.1", "--protocol", "icmp", "--help"],
    ] {
        assert_eq!(help_of(args), client, "{args:?}");
    }
    let server = help_of(&["server", "--help"]);
    for args in [
        &["server", "-h"][..],
        &["-s", "--help"],
        &["server", "--listen", "127.0.0.1", "--help"],
    ] {
        assert_eq!(help_of(args), server, "{args:?}");
    }
    assert!(client.starts_with("btest client"), "{client}");
    assert!(server.starts_with("btest server"), "{server}");
    assert!(overview != client && overview != server && client != server);
    for opt in client_only {
        assert!(client.contains(opt), "client --help lacks {opt}");
        assert!(!server.contains(opt), "server --help lists {opt}");
    }
    for opt in server_only {
        assert!(server.contains(opt), "server --help lacks {opt}");
        assert!(!client.contains(opt), "client --help lists {opt}");
    }
    let o = btest_bin().arg("-V").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("btest "));
}

#[test]
fn usage_errors_exit_2_and_echo_input() {
    for (args, needle) in [
        (&["client", "h", "--protocol", "icmp"][..], "icmp"),
        (&["client", "h", "--local-tx-speed", "lots"], "lots"),
        (&["client", "h", "--duration=forever"], "forever"),
        (&["server", "--listen", "nowhere:x"], "nowhere:x"),
        (&["client"], "HOST"),
        (&["dance"], "dance"),
    ] {
        let o = btest_bin().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: stdout must stay empty");
    }
}

#[test]
fn unreachable_server_exits_1() {
    watchdog(30, || {
        // a port nobody listens on: bind, note it, close
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let o = btest_bin()
            .args(["client", &format!("127.0.0.1:{port}"), "--duration", "1s"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot connect"), "{err}");
    });
}

#[test]
fn json_mode_is_pure_ndjson() {
    watchdog(40, || {
        let srv = start_server(server_cfg());
        for proto in ["tcp", "udp"] {
            let o = btest_bin()
                .args([
                    "client",
                    &srv.addr.to_string(),
                    "--protocol",
                    proto,
                    "--direction",
                    "both",
                    "--duration",
                    "2.2s",
                    "--interval",
                    "500ms",
                    "--local-tx-speed",
                    "50M",
                    "--remote-tx-speed",
                    "50M",
                    "--json",
                ])
                .output()
                .unwrap();
            assert_exit(&o, 0);
            let out = String::from_utf8(o.stdout).unwrap();
            let recs: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
                .collect();
            assert!(out.ends_with('\n'));
            assert_eq!(recs[0]["type"], "start");
            let intervals = recs.iter().filter(|r| r["type"] == "interval").count();
            assert!(intervals >= 3, "{intervals} interval records");
            let s = recs.last().unwrap();
            assert_eq!(s["type"], "summary");
            assert_eq!(s["schema"], 1);
            for k in [
                "protocol",
                "direction",
                "connections",
                "duration_s",
                "tx_bytes",
                "rx_bytes",
                "tx_avg_bps",
                "rx_avg_bps",
                "lost_packets",
                "local_cpu_avg",
                "remote_cpu_avg",
                "remote_rx_bytes",
                "auth",
                "end_reason",
            ] {
                assert!(s.get(k).is_some(), "summary lacks {k}: {s}");
            }
            assert_eq!(s["protocol"], proto);
            assert_eq!(s["auth"], "none");
            assert_eq!(s["end_reason"], "completed");
            assert!(s["tx_bytes"].as_u64().unwrap() > 0 && s["rx_bytes"].as_u64().unwrap() > 0);
            assert!(s["remote_rx_bytes"].as_u64().unwrap() > 0);
            // issue 4 fields: loss split, TCP_INFO, per-role thread CPU, pacing audit
            for k in [
                "lost_wire",
                "lost_host",
                "reordered",
                "duplicates",
                "tcp",
                "thread_cpu_max",
                "verdict",
                "remote_rx_saturated",
            ] {
                assert!(s.get(k).is_some(), "summary lacks {k}: {s}");
            }
            assert_eq!(s["remote_rx_saturated"], false);
            let cpu = &s["thread_cpu_max"];
            assert!(
                cpu["tx"].as_f64().unwrap() > 0.0 || cpu["rx"].as_f64().unwrap() > 0.0,
                "{cpu}"
            );
            if proto == "tcp" {
                let t = &s["tcp"]["total"];
                assert!(
                    t["rtt_us"].as_u64().unwrap() < 1_000_000 && t["mss"].as_u64().unwrap() > 0,
                    "{t}"
                );
                assert!(t["cwnd"].as_u64().unwrap() > 0, "{t}");
            } else {
                assert!(s["tcp"].is_null());
                assert_eq!(s["lost_host"].as_u64(), Some(0), "{s}");
            }
            let iv = recs.iter().find(|r| r["type"] == "interval").unwrap();
            let snd = &iv["senders"][0];
            assert_eq!(snd["target_bps"].as_u64(), Some(50_000_000), "{iv}");
            assert!(
                snd["gap_p50_us"].as_f64().is_some() && snd["gap_p99_us"].as_f64().is_some(),
                "{iv}"
            );
            let _ = srv.next_session(Duration::from_secs(3));
        }
    });
}

#[test]
fn server_binary_serves_and_stops_on_sigterm() {
    watchdog(40, || {
        let (mut child, addr) = spawn_server_bin(&["--json"]);
        let o = btest_bin()
            .args([
                "client",
                &addr,
                "--protocol",
                "udp",
                "--duration",
                "1.2s",
                "--remote-tx-speed",
                "10M",
            ])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        signal(child.id(), "-TERM");
        let status = child.wait().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(status.success(), "{status:?}");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let recs: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 2, "{out}");
        assert_eq!(recs[0]["type"], "session_start");
        assert_eq!(recs[1]["type"], "session_end");
        assert_eq!(recs[1]["protocol"], "udp");
        // the client ended the test in order: the server can tell (issue 8.5)
        assert_eq!(recs[1]["end_reason"], "client_closed");
    });
}

/// Every long option `--help`, `client --help` and `server --help` print is documented in the
/// man page and the README.
#[test]
fn every_option_is_documented() {
    let mut cmds = vec![
        &["--help"][..],
        &["client", "--help"],
        &["server", "--help"],
        &["fleet", "--help"],
        &["through", "--help"],
    ];
    if cfg!(feature = "exporter") {
        cmds.push(&["exporter", "--help"]);
    }
    let help: String = cmds.iter().map(|args| help_of(args)).collect();
    let mut opts: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
        .filter(|w| {
            w.starts_with("--")
                && w.len() > 2
                && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect();
    opts.sort();
    opts.dedup();
    assert!(opts.len() >= 25, "found only {opts:?}");
    let root = env!("CARGO_MANIFEST_DIR");
    let man = std::fs::read_to_string(format!("{root}/docs/btest.1")).unwrap();
    // roff escapes the dashes of options as \-
    let man = man.replace("\\-", "-");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let missing: Vec<String> = opts
        .iter()
        .flat_map(|o| {
            let mut m = vec![];
            if !man.contains(o) {
                m.push(format!("{o} (man page)"));
            }
            if !readme.contains(o) {
                m.push(format!("{o} (README)"));
            }
            m
        })
        .collect();
    assert!(missing.is_empty(), "undocumented options: {missing:?}");
}

/// `btest --help | head -1`: a reader that goes away early is not an error, and never a
/// panic (println! panics on a closed pipe).
#[test]
fn help_into_a_closed_pipe_exits_0() {
    for args in [&["--help"][..], &["client", "--help"], &["--version"]] {
        let mut child = btest_bin()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Issue 19: `btest completions bash` is a script bash accepts (`bash -n`) that names every
/// long option of every command's help; zsh and fish scripts name them too.
#[test]
fn completion_scripts_name_every_option() {
    let help: String = [
        &["client", "--help"][..],
        &["server", "--help"],
        &["fleet", "--help"],
        &["through", "--help"],
    ]
    .iter()
    .map(|a| help_of(a))
    .collect();
    let opts: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '(')
        .filter(|w| {
            w.starts_with("--")
                && w.len() > 2
                && w[2..]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit())
        })
        .collect();
    assert!(opts.len() >= 60, "{opts:?}");
    let bash = help_of(&["completions", "bash"]);
    let dir = std::env::temp_dir().join(format!("btest-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("btest.bash");
    std::fs::write(&file, &bash).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let zsh = help_of(&["completions", "zsh"]);
    let fish = help_of(&["completions", "fish"]);
    // Each shell parses its own script (zsh -n, fish --no-execute) where it is installed; CI
    // installs both (.ci/run).
    for (shell, check, text, name) in [
        ("zsh", "-n", &zsh, "_btest"),
        ("fish", "--no-execute", &fish, "btest.fish"),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        match std::process::Command::new(shell)
            .arg(check)
            .arg(&f)
            .output()
        {
            Ok(o) => assert!(
                o.status.success(),
                "{shell} {check}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) if std::env::var("CI").is_err() => {
                eprintln!("skipped the {shell} syntax check: {shell} is not installed")
            }
            Err(e) => panic!("{shell}: {e} (CI installs it)"),
        }
    }
    // --credentials is a word of the targets file, not a flag of the command line
    for o in opts.iter().filter(|o| **o != "--credentials") {
        assert!(bash.contains(o), "bash lacks {o}");
        assert!(zsh.contains(o), "zsh lacks {o}");
        assert!(fish.contains(&format!("-l {}", &o[2..])), "fish lacks {o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let o = btest_bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
