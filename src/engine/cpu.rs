//! Machine CPU load from /proc/stat deltas (elsewhere from the platform's counters through
//! `sys::cpu_times`, issue 21): what goes into our status messages and what the
//! reports show as local CPU.
//!
//! Must not: be called on a per-packet path (it reads a file); the status thread samples it
//! once per status interval.

/// Jiffy totals from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All jiffies.
    pub total: u64,
    /// idle + iowait jiffies.
    pub idle: u64,
}

/// Parses the aggregate `cpu ` line of /proc/stat.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest counted inside user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes { total, idle })
}

/// Busy percentage between two readings, 0..=100.
pub fn busy_percent(a: CpuTimes, b: CpuTimes) -> u8 {
    let total = b.total.saturating_sub(a.total);
    let idle = b.idle.saturating_sub(a.idle);
    if total == 0 {
        return 0;
    }
    let busy = total.saturating_sub(idle) as f64 / total as f64;
    (busy * 100.0).round().clamp(0.0, 100.0) as u8
}

/// Samples /proc/stat and reports the load since the previous sample.
#[derive(Debug)]
pub struct CpuMeter {
    last: Option<CpuTimes>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    /// Takes the first reading.
    pub fn new() -> Self {
        CpuMeter { last: read() }
    }

    /// Load since the last call (0 where /proc/stat is unavailable).
    pub fn sample(&mut self) -> u8 {
        let now = read();
        let r = match (self.last, now) {
            (Some(a), Some(b)) => busy_percent(a, b),
            _ => 0,
        };
        if now.is_some() {
            self.last = now;
        }
        r
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// No /proc/stat: the platform's own counters (sys: GetSystemTimes on Windows,
/// host_statistics on macOS, kern.cp_time on FreeBSD).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read() -> Option<CpuTimes> {
    crate::sys::cpu_times().map(|(total, idle)| CpuTimes { total, idle })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n";
    const B: &str = "cpu  160 0 90 880 70 0 0 0 0 0\ncpu0 80 0 45 440 35 0 0 0 0 0\nintr 2\n";

    #[test]
    fn parses_captured_proc_stat() {
        let a = parse_proc_stat(A).unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 850
            }
        );
        let b = parse_proc_stat(B).unwrap();
        // busy delta 100 of 200
        assert_eq!(busy_percent(a, b), 50);
        assert_eq!(busy_percent(b, b), 0);
        assert!(parse_proc_stat("intr 1\n").is_none());
        assert!(parse_proc_stat("cpu  1 x 3 4\n").is_none());
    }

    #[test]
    fn live_meter_is_plausible() {
        let mut m = CpuMeter::new();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(m.sample() <= 100);
    }
}
