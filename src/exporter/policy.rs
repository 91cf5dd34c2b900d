//! The exporter's decisions as pure functions: what a `/probe` query asks for, whether a
//! request runs a test, gets the cached result or a 503, and how long a test may take.
//!
//! No sockets, clocks or threads: the caller passes `now` and the state, so every rule is
//! table-tested. Must not: take a credential, an address or any test option from the URL
//! (issue 22: targets and credentials come from the targets file only; a query that tries is
//! refused with 400, so a scrape config that thinks it sets them learns otherwise at once).

use std::time::{Duration, Instant};

/// What a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeMode {
    /// A bandwidth test as `btest client` (the target line's options), duration capped.
    Test,
    /// A speed test (idle, download, upload, ... phases; `btest speed-test`).
    SpeedTest,
}

impl ProbeMode {
    /// The `mode=` word.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Test => "test",
            ProbeMode::SpeedTest => "speed-test",
        }
    }
}

/// A parsed `/probe` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The target's name in the file.
    pub target: String,
    /// `mode=`; without it the target's own mode (`mode=speed-test` on its line), else `test`.
    pub mode: Option<ProbeMode>,
}

/// Parameters that would carry what only the targets file may say. Named so the 400 says
/// why rather than "unknown parameter".
const FROM_FILE_ONLY: &[&str] = &[
    "user",
    "password",
    "credentials",
    "host",
    "port",
    "address",
    "duration",
    "protocol",
    "direction",
];

/// Parses the raw query string (after `?`). The `Err` is the 400's text.
pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut target: Option<String> = None;
    let mut mode: Option<ProbeMode> = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k).ok_or("a parameter name is not valid percent-encoded UTF-8")?;
        let v =
            decode(v).ok_or_else(|| format!("{}: not valid percent-encoded UTF-8", shown(&k)))?;
        match k.as_str() {
            "target" => {
                if target.is_some() {
                    return Err("target given twice".into());
                }
                if v.is_empty() {
                    return Err("target is empty: expected /probe?target=NAME".into());
                }
                target = Some(v);
            }
            "mode" => {
                if mode.is_some() {
                    return Err("mode given twice".into());
                }
                mode = Some(match v.as_str() {
                    "test" => ProbeMode::Test,
                    "speed-test" => ProbeMode::SpeedTest,
                    _ => return Err(format!("mode: '{}' is not test or speed-test", shown(&v))),
                });
            }
            k if FROM_FILE_ONLY.contains(&k) => {
                return Err(format!(
                    "{k}: the targets file sets it, never the URL (credentials and test \
                     options go on the target's line)"
                ))
            }
            k => {
                return Err(format!(
                    "unknown parameter '{}': expected target=NAME and mode=test|speed-test",
                    shown(k)
                ))
            }
        }
    }
    Ok(Query {
        target: target
            .ok_or("missing target: expected /probe?target=NAME[&mode=test|speed-test]")?,
        mode,
    })
}

/// Percent-decoding of a query component (`+` is a space, as forms send it). `None` for a
/// bad escape or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Text from the URL as an error message shows it: escaped, at most 64 characters.
pub fn shown(v: &str) -> String {
    let cut: String = v.chars().take(64).collect();
    format!("{}", crate::text::Esc(&cut))
}

/// What to do with a probe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the cached last result of this target and mode.
    Cached,
    /// Run a test now.
    Run,
    /// 503 with `Retry-After: retry_after_s`.
    Busy {
        /// Whole seconds, at least 1.
        retry_after_s: u64,
        /// Why, for the body.
        why: &'static str,
    },
}

/// What [`decide`] knows.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// When this target's (and mode's) last test finished, if there is a cached one.
    pub last_done: Option<Instant>,
    /// Tests of this target running now (any mode: they share its link).
    pub this_running: bool,
    /// Tests running now, all targets.
    pub running: usize,
    /// The deadline of the running test that ends first (of this target when it runs,
    /// else of all), for Retry-After.
    pub soonest_end: Option<Instant>,
}

/// The rule: a result younger than `min_interval` is served from the cache (the link is
/// not loaded more often than that, however many Prometheus servers scrape it); a target
/// already under test is not tested twice at once (the last result is served if there is
/// one, else 503); and at most `concurrency` tests run at once (503 with Retry-After).
pub fn decide(s: Situation, now: Instant, min_interval: Duration, concurrency: usize) -> Decision {
    let retry = || {
        s.soonest_end
            .map_or(1, |e| {
                e.saturating_duration_since(now).as_secs_f64().ceil() as u64
            })
            .max(1)
    };
    if s.last_done
        .is_some_and(|d| now.saturating_duration_since(d) < min_interval)
    {
        return Decision::Cached;
    }
    if s.this_running {
        return match s.last_done {
            Some(_) => Decision::Cached,
            None => Decision::Busy {
                retry_after_s: retry(),
                why: "a test of this target is running; ask again when it is done",
            },
        };
    }
    if s.running >= concurrency {
        return Decision::Busy {
            retry_after_s: retry(),
            why: "as many tests as --concurrency allows are running; ask again later",
        };
    }
    Decision::Run
}

/// How long one probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The whole probe, from the request: at this deadline the exporter stops the test.
    pub deadline: Duration,
    /// The test's data phase (`--duration` of the test).
    pub duration: Duration,
    /// Connect and each handshake read.
    pub connect_timeout: Duration,
}

/// Time a test needs beside its data phase and idle latency second: resolve, connect,
/// login (EC-SRP5 takes ~2 ms at most; a far router's round trips more), the drain at the
/// end and the answer. 2 s covers a login over a 300 ms path with room.
pub const OVERHEAD: Duration = Duration::from_secs(2);
/// The shortest data phase worth running: one report interval.
pub const MIN_DURATION: Duration = Duration::from_secs(1);

/// The probe's budget. `target` is the target line's `--duration` (`None`: until stopped),
/// `idle` its `--latency-idle` (0 without a probe), `connect` its `--connect-timeout`;
/// `max_duration` and `timeout` the exporter's flags; `scrape` the request's
/// `X-Prometheus-Scrape-Timeout-Seconds`. The scrape's timeout, less a margin for the
/// answer to travel (a quarter of it, at most 0.5 s), shortens the deadline when smaller:
/// Prometheus gives up on a scrape at its timeout, and a test it no longer waits for only
/// loads the link.
pub fn budget(
    target: Option<Duration>,
    idle: Duration,
    connect: Duration,
    max_duration: Duration,
    timeout: Duration,
    scrape: Option<Duration>,
) -> Budget {
    let deadline = match scrape {
        Some(s) => timeout.min(s.saturating_sub((s / 4).min(Duration::from_millis(500)))),
        None => timeout,
    };
    let room = deadline.saturating_sub(idle).saturating_sub(OVERHEAD);
    let duration = target
        .unwrap_or(max_duration)
        .min(max_duration)
        .min(room)
        .max(MIN_DURATION);
    let left = deadline.saturating_sub(idle).saturating_sub(duration);
    let connect_timeout = connect.min(left.max(Duration::from_secs(1)));
    Budget {
        deadline,
        duration,
        connect_timeout,
    }
}

/// `X-Prometheus-Scrape-Timeout-Seconds` (`10`, `9.5`): a positive number of seconds up to
/// an hour; anything else is ignored (the exporter's `--timeout` applies).
pub fn scrape_timeout(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && s > 0.0 && s <= 3600.0).then(|| Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Query, String> {
        parse_query(s)
    }

    #[test]
    fn queries() {
        assert_eq!(
            q("target=tower-1").unwrap(),
            Query {
                target: "tower-1".into(),
                mode: None
            }
        );
        assert_eq!(
            q("mode=speed-test&target=a%20b").unwrap(),
            Query {
                target: "a b".into(),
                mode: Some(ProbeMode::SpeedTest)
            }
        );
        assert_eq!(q("target=x+y&").unwrap().target, "x y");
        let bad = [
            ("", "missing target"),
            ("mode=test", "missing target"),
            ("target=", "target is empty"),
            ("target=a&target=b", "target given twice"),
            (
                "target=a&mode=fast",
                "mode: 'fast' is not test or speed-test",
            ),
            (
                "target=a&password=x",
                "password: the targets file sets it, never the URL",
            ),
            ("target=a&user=admin", "user: the targets file sets it"),
            ("target=a&host=10.0.0.1", "host: the targets file sets it"),
            ("target=a&module=x", "unknown parameter 'module'"),
            ("target=%zz", "target: not valid percent-encoded"),
            ("target=%ff", "target: not valid percent-encoded"),
            ("target=a%", "target: not valid percent-encoded"),
        ];
        for (s, want) in bad {
            let e = q(s).unwrap_err();
            assert!(e.starts_with(want), "{s}: {e}");
        }
        // A control character from the URL is shown escaped, never raw.
        let e = q("target=a&x%0Ay=1").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }

    /// Every query built from these pieces parses or is refused; none panics, and an error
    /// never carries a raw control character from the URL.
    #[test]
    fn no_query_panics() {
        let pieces = [
            "target=",
            "mode=",
            "&",
            "=",
            "%",
            "%4",
            "%41",
            "%0a",
            "%ff",
            "%c3%a9",
            "+",
            "x",
            "a=b",
            "speed-test",
            "test",
            "password=",
            "\u{202e}",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut q = String::new();
            for _ in 0..(seed % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                q.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            if let Err(e) = parse_query(&q) {
                assert!(!e.chars().any(|c| c.is_control()), "{q:?}: {e:?}");
            }
        }
    }

    fn sit(last: Option<u64>, this: bool, running: usize) -> (Situation, Instant) {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(1000);
        (
            Situation {
                last_done: last.map(|ago| now - Duration::from_secs(ago)),
                this_running: this,
                running,
                soonest_end: Some(now + Duration::from_millis(2500)),
            },
            now,
        )
    }

    #[test]
    fn cache_and_concurrency() {
        let min = Duration::from_secs(60);
        let d = |last, this, running| {
            let (s, now) = sit(last, this, running);
            decide(s, now, min, 2)
        };
        // Fresh enough: the cache, whatever runs.
        assert_eq!(d(Some(10), false, 0), Decision::Cached);
        assert_eq!(d(Some(59), true, 2), Decision::Cached);
        // Old or none: run, while there is room.
        assert_eq!(d(Some(60), false, 1), Decision::Run);
        assert_eq!(d(None, false, 0), Decision::Run);
        // Full: 503, Retry-After rounded up to the soonest end.
        assert!(matches!(
            d(None, false, 2),
            Decision::Busy {
                retry_after_s: 3,
                ..
            }
        ));
        // The same target under test: its last result, else 503.
        assert_eq!(d(Some(600), true, 1), Decision::Cached);
        assert!(matches!(d(None, true, 1), Decision::Busy { .. }));
        // Retry-After is at least 1.
        let (mut s, now) = sit(None, false, 5);
        s.soonest_end = Some(now);
        assert!(matches!(
            decide(s, now, min, 2),
            Decision::Busy {
                retry_after_s: 1,
                ..
            }
        ));
    }

    #[test]
    fn budgets() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // No header: the target's 5 s under the caps.
        let b = budget(Some(s(5)), s(1), s(10), s(10), s(30), None);
        assert_eq!(
            (b.deadline, b.duration, b.connect_timeout),
            (s(30), s(5), s(10))
        );
        // --max-duration caps a longer or unlimited target.
        assert_eq!(
            budget(Some(s(60)), s(1), s(10), s(10), s(30), None).duration,
            s(10)
        );
        assert_eq!(
            budget(None, s(1), s(10), s(10), s(30), None).duration,
            s(10)
        );
        // Prometheus' default 10 s scrape timeout: deadline 9.5 s, data 6.5 s, connect 2 s.
        let b = budget(None, s(1), s(10), s(10), s(30), Some(s(10)));
        assert_eq!(
            (b.deadline, b.duration, b.connect_timeout),
            (ms(9500), ms(6500), s(2))
        );
        // A tiny scrape timeout still runs the shortest test (the deadline then stops it).
        let b = budget(None, s(1), s(10), s(10), s(30), Some(s(2)));
        assert_eq!((b.deadline, b.duration), (ms(1500), s(1)));
        assert_eq!(b.connect_timeout, s(1));
        // --timeout wins over a longer scrape timeout.
        assert_eq!(
            budget(None, s(1), s(10), s(10), s(8), Some(s(60))).deadline,
            s(8)
        );
    }

    #[test]
    fn scrape_timeout_header() {
        assert_eq!(scrape_timeout("10"), Some(Duration::from_secs(10)));
        assert_eq!(scrape_timeout(" 9.5 "), Some(Duration::from_millis(9500)));
        for bad in ["0", "-1", "NaN", "inf", "1e9", "ten", ""] {
            assert_eq!(scrape_timeout(bad), None, "{bad}");
        }
    }
}
