//! Limits as an operator writes them, and the calendar they count in: `day=10G up-week=50G
//! sessions=2 duration=5m rate=100M`, from a users-file `limit` line or a `--source-limit`.
//!
//! Byte windows are calendar periods in UTC (a day from 00:00, a week from Monday 00:00, a
//! month from the 1st), named by opaque bucket strings (`d2026-12-03`, `w2026-11-30`,
//! `m2026-12`) that sort in time order within a window; usage.rs stores bytes per bucket.
//!
//! Pure: no clock (callers pass Unix seconds), no I/O. Must not: count or enforce (accounting.rs
//! does).

use std::time::Duration;

/// A calendar period a byte quota counts in (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Day,
    Week,
    Month,
}

/// What a byte quota counts, as the client sees it: `up` is what the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Up,
    Down,
    Total,
}

/// One byte quota: at most `bytes` in each `window`, counting `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteLimit {
    pub window: Window,
    pub dir: Dir,
    pub bytes: u64,
}

/// Everything one `limit` line or `--source-limit` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub bytes: Vec<ByteLimit>,
    /// Concurrent sessions.
    pub sessions: Option<usize>,
    /// Longest session.
    pub duration: Option<Duration>,
    /// bit/s the server sends at and (TCP) reads at, at most.
    pub rate: Option<u64>,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Day, Window::Week, Window::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// For messages: "daily", "weekly", "monthly".
    pub fn adjective(self) -> &'static str {
        match self {
            Window::Day => "daily",
            Window::Week => "weekly",
            Window::Month => "monthly",
        }
    }

    fn prefix(self) -> char {
        match self {
            Window::Day => 'd',
            Window::Week => 'w',
            Window::Month => 'm',
        }
    }

    /// The window a bucket string belongs to.
    pub fn of_bucket(b: &str) -> Option<Window> {
        match b.chars().next()? {
            'd' => Some(Window::Day),
            'w' => Some(Window::Week),
            'm' => Some(Window::Month),
            _ => None,
        }
    }

    /// The first second (Unix time) of the period holding `unix` (clamped at the epoch).
    pub fn start(self, unix: u64) -> u64 {
        (self.start_day(unix).max(0) as u64) * 86_400
    }

    /// The first day of the period, days since the epoch (may be before it).
    fn start_day(self, unix: u64) -> i64 {
        let days = (unix / 86_400) as i64;
        match self {
            Window::Day => days,
            // 1970-01-01 was a Thursday: Monday-based weeks start 3 days before day 0 + 7k.
            Window::Week => days - (days + 3).rem_euclid(7),
            Window::Month => {
                let (y, m, _) = civil(days);
                days_from_civil(y, m, 1)
            }
        }
    }

    /// The first second of the next period: when a quota in this window resets.
    pub fn next_start(self, unix: u64) -> u64 {
        let start_days = self.start_day(unix);
        let next = match self {
            Window::Day => start_days + 1,
            Window::Week => start_days + 7,
            Window::Month => {
                let (y, m, _) = civil(start_days);
                if m == 12 {
                    days_from_civil(y + 1, 1, 1)
                } else {
                    days_from_civil(y, m + 1, 1)
                }
            }
        };
        next as u64 * 86_400
    }

    /// The bucket string of the period holding `unix`.
    pub fn bucket(self, unix: u64) -> String {
        let (y, m, d) = civil(self.start_day(unix));
        match self {
            Window::Month => format!("{}{y:04}-{m:02}", self.prefix()),
            _ => format!("{}{y:04}-{m:02}-{d:02}", self.prefix()),
        }
    }
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
            Dir::Total => "total",
        }
    }

    /// The bytes this quota counts out of (up, down).
    pub fn of(self, up: u64, down: u64) -> u64 {
        match self {
            Dir::Up => up,
            Dir::Down => down,
            Dir::Total => up.saturating_add(down),
        }
    }
}

/// A byte count in the decimal units quotas are written in: `999 B`, `1.00 kB`, `10.00 GB`.
pub fn format_bytes(b: u64) -> String {
    let units = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    match units.iter().find(|(_, m)| b as f64 >= *m) {
        Some((u, m)) => format!("{:.2} {u}", b as f64 / m),
        None => format!("{b} B"),
    }
}

/// "2026-12-03 00:00 UTC", for messages.
pub fn utc(unix: u64) -> String {
    let (y, m, d) = civil((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60
    )
}

/// (year, month, day) of days since 1970-01-01 (the proleptic Gregorian calendar; the
/// well-known era-based conversion, exact for every day a u64 of seconds can name).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a byte count: `500M`, `10G`, `1.5T` (decimal, as disks and ISPs count), `10GiB`
/// (binary), a trailing `B` allowed, or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid byte count '{s}': use a number with an optional unit k, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 10G, 500MiB"
        )
    };
    let t = s.trim();
    let units: [(&str, f64); 9] = [
        ("KiB", 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let t = t
        .strip_suffix('B')
        .filter(|r| !r.ends_with('i'))
        .unwrap_or(t);
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((t, 1.0));
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let b = (v * mult).round();
    if !b.is_finite() || b < 0.0 || b > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(b as u64)
}

/// Parses a limits spec: space-separated `KEY=VALUE`, each key at most once.
///
/// Byte quotas: `day`, `week`, `month` (up and down together), `up-day` ... `down-month`
/// (one direction, the client's view: up is what the client sends). Others: `sessions=N`
/// (concurrent), `duration=5m` (per session), `rate=100M` (bit/s cap on what the server sends
/// and reads). A 0 byte quota refuses every test.
pub fn parse_limits(spec: &str) -> Result<LimitSet, String> {
    let mut out = LimitSet::default();
    let mut seen: Vec<&str> = Vec::new();
    let help = "expected KEY=VALUE items: day, week, month, up-day, down-week, ... (bytes, e.g. 10G), sessions=N, duration=5m, rate=100M";
    if spec.split_whitespace().next().is_none() {
        return Err(format!("empty limits: {help}"));
    }
    for item in spec.split_whitespace() {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' in '{spec}': {help}"))?;
        if seen.contains(&k) {
            return Err(format!("'{k}' given twice in '{spec}'"));
        }
        seen.push(k);
        let ctx = |e: String| format!("{k} in '{spec}': {e}");
        match k {
            "sessions" => {
                let n: usize = v.parse().map_err(|_| {
                    format!("sessions in '{spec}': '{v}' is not a whole number of sessions")
                })?;
                out.sessions = Some(n);
            }
            "duration" => {
                let d = crate::units::parse_duration(v).map_err(ctx)?;
                if d.is_zero() {
                    return Err(format!(
                        "duration in '{spec}': 0 would end every test at once; leave it out for no limit"
                    ));
                }
                out.duration = Some(d);
            }
            "rate" => {
                let r = crate::units::parse_rate(v).map_err(ctx)?;
                // 0 means unlimited, as everywhere else a rate is typed.
                out.rate = (r > 0).then_some(r);
            }
            _ => {
                let (dir, w) = match k.split_once('-') {
                    Some(("up", w)) => (Dir::Up, w),
                    Some(("down", w)) => (Dir::Down, w),
                    None => (Dir::Total, k),
                    _ => return Err(format!("unknown limit '{k}' in '{spec}': {help}")),
                };
                let window = Window::ALL
                    .into_iter()
                    .find(|x| x.as_str() == w)
                    .ok_or_else(|| format!("unknown limit '{k}' in '{spec}': {help}"))?;
                out.bytes.push(ByteLimit {
                    window,
                    dir,
                    bytes: parse_bytes(v).map_err(ctx)?,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(y: i64, m: u32, d: u32, h: u64) -> u64 {
        days_from_civil(y, m, d) as u64 * 86_400 + h * 3600
    }

    #[test]
    fn calendar_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_425), (2025, 12, 3));
        // leap days
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28),
            1
        );
    }

    #[test]
    fn buckets_and_resets() {
        // Thursday 2026-12-03 15:00 UTC
        let t = unix(2026, 12, 3, 15);
        assert_eq!(Window::Day.bucket(t), "d2026-12-03");
        assert_eq!(Window::Week.bucket(t), "w2026-11-30"); // Monday
        assert_eq!(Window::Month.bucket(t), "m2026-12");
        assert_eq!(Window::Day.next_start(t), unix(2026, 12, 4, 0));
        assert_eq!(Window::Week.next_start(t), unix(2026, 12, 7, 0));
        assert_eq!(Window::Month.next_start(t), unix(2027, 1, 1, 0));
        assert_eq!(utc(Window::Month.next_start(t)), "2027-01-01 00:00 UTC");
        // The last second of a period is in it, the next is not.
        let end = unix(2026, 12, 7, 0);
        assert_eq!(Window::Week.bucket(end - 1), "w2026-11-30");
        assert_eq!(Window::Week.bucket(end), "w2026-12-07");
        assert_eq!(Window::Month.bucket(unix(2024, 2, 29, 23)), "m2024-02");
        assert_eq!(
            Window::Month.next_start(unix(2024, 2, 29, 23)),
            unix(2024, 3, 1, 0)
        );
        // Epoch: 1970-01-01 was a Thursday; its week started on Monday 1969-12-29, clamped.
        assert_eq!(Window::Week.start(0), 0);
        assert_eq!(Window::Week.next_start(0), unix(1970, 1, 5, 0));
        // Buckets sort in time order within a window.
        let a = Window::Day.bucket(unix(2026, 9, 30, 0));
        let b = Window::Day.bucket(unix(2026, 10, 1, 0));
        assert!(a < b);
        for w in Window::ALL {
            assert_eq!(Window::of_bucket(&w.bucket(t)), Some(w));
        }
    }

    #[test]
    fn byte_counts() {
        let ok = [
            ("0", 0),
            ("1500", 1500),
            ("10G", 10_000_000_000),
            ("10GB", 10_000_000_000),
            ("1.5T", 1_500_000_000_000),
            ("500k", 500_000),
            ("1GiB", 1 << 30),
            ("2MiB", 2 << 20),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
        for s in ["", "G", "-1G", "ten", "1e400", "5 X", "NaN"] {
            let e = parse_bytes(s).unwrap_err();
            assert!(e.contains(&format!("'{s}'")), "{e}");
        }
    }

    #[test]
    fn limit_specs() {
        let l = parse_limits("day=10G up-week=5G down-month=1T sessions=2 duration=5m rate=100M")
            .unwrap();
        assert_eq!(
            l.bytes,
            vec![
                ByteLimit {
                    window: Window::Day,
                    dir: Dir::Total,
                    bytes: 10_000_000_000
                },
                ByteLimit {
                    window: Window::Week,
                    dir: Dir::Up,
                    bytes: 5_000_000_000
                },
                ByteLimit {
                    window: Window::Month,
                    dir: Dir::Down,
                    bytes: 1_000_000_000_000
                },
            ]
        );
        assert_eq!(l.sessions, Some(2));
        assert_eq!(l.duration, Some(Duration::from_secs(300)));
        assert_eq!(l.rate, Some(100_000_000));
        assert_eq!(parse_limits("rate=0").unwrap().rate, None);
        let bad = [
            ("", "empty"),
            ("day", "KEY=VALUE"),
            ("year=1G", "unknown limit 'year'"),
            ("sideways-day=1G", "unknown limit"),
            ("day=1G day=2G", "twice"),
            ("sessions=two", "whole number"),
            ("duration=0", "end every test"),
            ("rate=fast", "rate in 'rate=fast'"),
            ("week=lots", "invalid byte count 'lots'"),
        ];
        for (spec, want) in bad {
            let e = parse_limits(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn byte_counts_print_in_quota_units() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1000), "1.00 kB");
        assert_eq!(format_bytes(10_000_000_000), "10.00 GB");
        assert_eq!(format_bytes(1_500_000_000_000), "1.50 TB");
    }

    #[test]
    fn directions_count_the_client_view() {
        assert_eq!(Dir::Up.of(3, 5), 3);
        assert_eq!(Dir::Down.of(3, 5), 5);
        assert_eq!(Dir::Total.of(3, 5), 8);
        assert_eq!(Dir::Total.of(u64::MAX, 5), u64::MAX);
    }
}
