//! Parsing and formatting of rates, sizes and durations as a network engineer types them.
//!
//! Rates are bits per second with decimal SI suffixes (k = 1000, as RouterOS), e.g. `100M`,
//! `1.5G`, `0` or `unlimited`. Durations: `10s`, `500ms`, `2m`, `1h`, or a bare number of
//! seconds. Errors keep the user's input and say what is accepted.

use std::time::Duration;

/// Parses a rate in bits per second. `0` and `unlimited` give 0 (= unlimited).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid rate '{s}': use bits per second with an optional k/M/G suffix, \
             e.g. 50M, 1.5G, 800k, 100Mbit, or 0 for unlimited"
        )
    };
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(0);
    }
    // `100M`, `100Mbps`, `100Mbit`, `100Mbit/s`, `100 Mb/s` (iperf3, tc and RouterOS
    // spellings, issue 19); the unit is always bits.
    let lower = t.to_ascii_lowercase();
    let unit_len = ["bit/s", "bits", "bps", "bit", "b/s"]
        .iter()
        .find(|u| lower.ends_with(*u) && lower.len() > u.len())
        .map_or(0, |u| u.len());
    let t = t[..t.len() - unit_len].trim_end();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        Some('t' | 'T') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim_end().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    let bits = (v * mult).round();
    if bits > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bits as u64)
}

/// Parses a duration; a bare number means seconds. Parts add up: `1m30s`, `1h30m`; units
/// `ms`, `s`/`sec`/`secs`, `m`/`min`/`mins`, `h`/`hour`/`hours` (issue 19: `1m30s`, `10sec`
/// and `2min` were refused).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid duration '{s}': use a number with an optional unit ms, s, m or h, e.g. \
             10s, 500ms, 2m, 1m30s"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let u_end = rest[n_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| n_end + i);
        let v: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        let scale = match rest[n_end..u_end].trim() {
            "" if n_end == t.len() => 1.0,
            "ms" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            _ => return Err(bad()),
        };
        total += v * scale;
        rest = &rest[u_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a rate with an automatic unit: `bps`, `kbps`, `Mbps` or `Gbps`.
pub fn format_rate(bps: f64) -> String {
    let bps = if bps.is_finite() { bps.max(0.0) } else { 0.0 };
    if bps >= 1e9 {
        format!("{:.2} Gbps", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mbps", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.1} kbps", bps / 1e3)
    } else {
        format!("{bps:.0} bps")
    }
}

/// `x` with `.1` decimals that never prints as `-0.00`: a value that rounds to zero prints
/// as 0 (issue 19: a report said `Bufferbloat -0.00 ms` for a loaded median a hair below the
/// idle one). Non-finite values print as 0 too.
pub struct Fixed(pub f64, pub usize);

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let mut p = 1.0;
        for _ in 0..self.1 {
            p *= 10.0;
        }
        let v = if self.0.is_finite() && (self.0 * p).round() != 0.0 {
            self.0
        } else {
            0.0
        };
        write!(f, "{v:.*}", self.1)
    }
}

/// Formats a byte count with binary units.
pub fn format_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", f / (1024.0 * 1024.0 * 1024.0))
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_never_prints_negative_zero() {
        let table = [
            (-0.004, 2, "0.00"),
            (-0.0, 2, "0.00"),
            (-0.005, 2, "-0.01"),
            (0.004, 2, "0.00"),
            (-0.04, 1, "0.0"),
            (12.345, 1, "12.3"),
            (-3.0, 0, "-3"),
            (f64::NAN, 2, "0.00"),
        ];
        for (x, d, want) in table {
            assert_eq!(Fixed(x, d).to_string(), want, "{x} with {d}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("unlimited"), Ok(0));
        assert_eq!(parse_rate("50M"), Ok(50_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("800k"), Ok(800_000));
        assert_eq!(parse_rate("800K"), Ok(800_000));
        assert_eq!(parse_rate("300"), Ok(300));
        assert_eq!(parse_rate("10Mbps"), Ok(10_000_000));
        // issue 19: iperf3's and tc's spellings
        assert_eq!(parse_rate("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("100Mbps"), Ok(100_000_000));
        assert_eq!(parse_rate("100mbit/s"), Ok(100_000_000));
        assert_eq!(parse_rate("2.5 Gbit/s"), Ok(2_500_000_000));
        assert_eq!(parse_rate("800kbit"), Ok(800_000));
        assert_eq!(parse_rate("300bps"), Ok(300));
        for bad in [
            "", "fast", "-1M", "1.2.3", "M", "NaN", "inf", "bps", "Mbit", "10Mbyte",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        // issue 19: compound durations and word units
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10sec"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "x",
            "-1s",
            "10y",
            "1e99",
            "1m30",
            "s",
            "1..2s",
            "1s 2",
            "99999999999h",
        ] {
            assert!(parse_duration(bad)
                .unwrap_err()
                .contains(&format!("'{bad}'")));
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_rate(0.0), "0 bps");
        assert_eq!(format_rate(999.0), "999 bps");
        assert_eq!(format_rate(1500.0), "1.5 kbps");
        assert_eq!(format_rate(95_200_000.0), "95.2 Mbps");
        assert_eq!(format_rate(9.41e9), "9.41 Gbps");
        assert_eq!(format_rate(f64::NAN), "0 bps");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
