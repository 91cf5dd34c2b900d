//! The command line (`cli::parse_from`): lexing, every option's value parser (rates,
//! durations, addresses, `HOST[:PORT]`, numbers, yes/no, methods) and the cross-flag checks.
//!
//! Input: the arguments, separated by NUL bytes, passed as `OsString`s with their raw bytes,
//! so non-UTF-8 arguments are exercised too. Properties asserted:
//! - an error is a non-empty message;
//! - `--help` in front of any arguments always wins (`Mode::Help`, never an error);
//! - `BTEST_PASSWORD` fills in only what the line left open: an accepted server, help or
//!   version invocation is the same with and without it (a server reads it only for a
//!   `--user` given without `--password`, which without it is an error);
//! - what is accepted is consistent: a client has 1..=255 connections and a user whenever it
//!   has a password; a server listens somewhere and only requires authentication when it
//!   has accounts; a fleet's numbers are in range; `through` has one listen address, the one
//!   its client connects to, and one one-time account both sides share.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use btest::auth::AuthMethod;
use btest::cli::{self, Mode};
use libfuzzer_sys::fuzz_target;

fn args(data: &[u8]) -> Vec<OsString> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let argv = args(data);
    let got = cli::parse_from(argv.clone(), None);
    let with_env = || cli::parse_from(argv.clone(), Some("env-secret".to_string()));
    match &got {
        Err(msg) => assert!(!msg.is_empty()),
        Ok(inv) => match &inv.mode {
            Mode::Client(c) => {
                assert!(c.connection_count >= 1);
                assert!(c.password.is_none() || c.user.is_some());
                if c.password.is_none() {
                    // The environment's password fills in only what the line left open.
                    let Ok(Mode::Client(e)) = with_env().map(|i| i.mode) else {
                        panic!("BTEST_PASSWORD turned a client into something else");
                    };
                    assert_eq!(e.password.as_deref(), Some("env-secret"));
                }
            }
            Mode::Server(s) => {
                assert!(!s.listen.is_empty());
                if s.auth != AuthMethod::None {
                    assert!(!s.users.is_empty() || s.users_file.is_some());
                }
                assert_eq!(
                    with_env().as_ref(),
                    Ok(inv),
                    "BTEST_PASSWORD changed a server"
                );
            }
            Mode::Help(_) => assert_eq!(with_env().as_ref(), Ok(inv)),
            Mode::Version => assert_eq!(with_env().as_ref(), Ok(inv)),
            Mode::Completions(_) => assert_eq!(with_env().as_ref(), Ok(inv)),
            Mode::Fleet(f) => {
                assert!((1..=64).contains(&f.parallel) && f.retries <= 10);
                assert!(!f.file.as_os_str().is_empty());
                assert_eq!(with_env().as_ref(), Ok(inv), "BTEST_PASSWORD changed a fleet");
            }
            Mode::Through(t) => {
                // One listen address, the one the client connects to, and one one-time
                // account both sides share (random per parse, so not compared across runs).
                assert_eq!(t.server.listen.len(), 1);
                assert_eq!(t.server.listen[0].ip().to_string(), t.client.host.trim_matches(['[', ']']));
                assert_eq!(t.server.users.len(), 1);
                assert_eq!(t.client.password.as_ref(), Some(&t.server.users[0].1));
                assert_eq!(t.client.user.as_deref(), Some("btest-through"));
                assert!(matches!(with_env().map(|i| i.mode), Ok(Mode::Through(_))));
            }
            Mode::SpeedTest(st) => {
                // The ranges --help promises, and a login as the client's.
                assert!(!st.phases.is_empty() && !st.probe_dscp.is_empty());
                assert!(st.probe_dscp.iter().all(|(d, _)| *d <= 63));
                let ms = st.probe_interval.as_millis();
                assert!((5..=10_000).contains(&ms), "{ms} ms");
                assert!(st.phase.as_secs() >= 2 && st.phase.as_secs() <= 600);
                assert!(st.client.password.is_none() || st.client.user.is_some());
                assert!(matches!(with_env().map(|i| i.mode), Ok(Mode::SpeedTest(_))));
            }
            Mode::Exporter(x) => {
                assert!((1..=16).contains(&x.concurrency));
                assert!(!x.targets.as_os_str().is_empty());
                // Credentials come from the targets file only: the environment changes nothing.
                assert_eq!(with_env().as_ref(), Ok(inv), "BTEST_PASSWORD changed an exporter");
            }
        },
    }

    let mut helped = vec![OsString::from("--help")];
    helped.extend(argv);
    match cli::parse_from(helped, None) {
        Ok(inv) => assert!(matches!(inv.mode, Mode::Help(_)), "{inv:?}"),
        Err(e) => panic!("--help first must win, got {e:?}"),
    }
});
