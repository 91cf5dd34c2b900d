//! Per-thread CPU load of one session's role threads from /proc/self/task/<tid>/stat, so a
//! report can tell a saturated TX or RX thread (the host limited the rate) from a saturated
//! link.
//!
//! Owns: parsing a task's stat line ([`parse_task_stat`], pure), turning tick deltas into
//! percent of one core ([`ThreadCpu::sample`]) and the one-line diagnosis ([`verdict`], pure).
//!
//! A session's threads are found by the kernel ids its role table recorded at spawn
//! (roles.rs), never by name: every session in the process has the same thread names, and
//! reading names back made `btest through` report the server side's RX thread as the
//! client's (issue 20, bug B1: `rx 19.7` in a UDP transmit-only test) and `fleet --parallel`
//! mix targets.
//!
//! Must not: be called on a per-packet path (each sample reads one file per thread); the
//! status thread samples it once per status interval. Must not: name or spawn threads.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::roles::{RoleKind, RoleSlot};

/// Percent of a core above which [`verdict`] blames the host rather than the link.
pub const DEFAULT_BUSY_THRESHOLD: f64 = 90.0;

/// Splits one `/proc/<pid>/task/<tid>/stat` line into the thread name (comm) and its CPU time
/// in clock ticks (utime + stime). Pure.
///
/// The comm sits in parentheses and may itself contain spaces and parentheses, so it runs
/// from the first `(` to the *last* `)`. After that come the fields numbered from 3 in
/// proc(5): state (3), ..., utime (14), stime (15).
pub fn parse_task_stat(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    let mut rest = text[close + 1..].split_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, i.e. the 12th item (index 11).
    const UTIME_AFTER_STATE: usize = 14 - 3;
    let utime: u64 = rest.nth(UTIME_AFTER_STATE)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((comm, utime.saturating_add(stime)))
}

/// One role thread's CPU load over the last sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadLoad<'a> {
    /// Kernel thread id.
    pub tid: u32,
    /// Its role.
    pub kind: RoleKind,
    /// Its thread name (the role table's, untruncated).
    pub name: &'a str,
    /// CPU time used during the interval over its wall time, in percent of one core
    /// (100.0 = one core fully busy).
    pub percent_of_core: f64,
}

/// Samples a session's role threads and reports each one's load since the previous sample.
#[derive(Debug)]
pub struct ThreadCpu {
    /// Kernel clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    ticks_per_sec: u64,
    /// (tid, utime + stime) per role slot at the previous sample; tid 0: not seen yet.
    last: Vec<(u32, u64)>,
    /// When the previous sample was taken.
    at: Instant,
}

impl Default for ThreadCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadCpu {
    /// Starts the clock: the first [`ThreadCpu::sample`] covers the time since `new`. Made
    /// just before the status thread starts, so the role threads' CPU before it is a few
    /// microseconds.
    pub fn new() -> Self {
        ThreadCpu {
            ticks_per_sec: crate::sys::clock_ticks().max(1),
            last: Vec::new(),
            at: Instant::now(),
        }
    }

    /// Load of each running thread of `slots` (the same table at every call) since the
    /// previous sample (or `new`), busiest first. A thread seen for the first time is charged
    /// all its CPU time; a thread that has not started or has ended (tid 0) is left out.
    /// Empty where /proc is unavailable.
    pub fn sample<'a>(&mut self, slots: &'a [RoleSlot]) -> Vec<ThreadLoad<'a>> {
        let now = Instant::now();
        let wall = now.duration_since(self.at).as_secs_f64();
        self.last.resize(slots.len(), (0, 0));
        let mut out = Vec::new();
        for (slot, last) in slots.iter().zip(self.last.iter_mut()) {
            let tid = slot.tid.load(Relaxed);
            let Some(ticks) = (tid != 0).then(|| read_ticks(tid)).flatten() else {
                continue;
            };
            let before = if last.0 == tid { last.1 } else { 0 };
            *last = (tid, ticks);
            let used = ticks.saturating_sub(before);
            let percent_of_core = if wall > 0.0 {
                used as f64 / self.ticks_per_sec as f64 / wall * 100.0
            } else {
                0.0
            };
            out.push(ThreadLoad {
                tid,
                kind: slot.kind,
                name: &slot.name,
                percent_of_core,
            });
        }
        self.at = now;
        out.sort_by(|a, b| b.percent_of_core.total_cmp(&a.percent_of_core));
        out
    }
}

/// CPU ticks of this process's thread `tid`; `None` when it has exited.
#[cfg(not(windows))]
fn read_ticks(tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    Some(parse_task_stat(&text)?.1)
}

/// Windows: GetThreadTimes through the thread id (issue 21), in the 100 ns units that
/// `sys::clock_ticks` reports there. (macOS and FreeBSD: tid 0, not measured.)
#[cfg(windows)]
fn read_ticks(tid: u32) -> Option<u64> {
    crate::sys::thread_cpu_ticks(tid)
}

/// One-line diagnosis when the busiest thread used at least `threshold` percent of a core
/// (e.g. [`DEFAULT_BUSY_THRESHOLD`]): that thread, not the link, set the rate. Pure.
///
/// Example: "rx thread btest-rx-0 at 99 % of a core: this host, not the link, limited the rate".
pub fn verdict(loads: &[ThreadLoad<'_>], threshold: f64) -> Option<String> {
    let busiest = loads
        .iter()
        .max_by(|a, b| a.percent_of_core.total_cmp(&b.percent_of_core))?;
    if busiest.percent_of_core < threshold {
        return None;
    }
    Some(format!(
        "{} thread {} at {:.0} % of a core: this host, not the link, limited the rate",
        busiest.kind.word(),
        busiest.name,
        busiest.percent_of_core
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Captured from /proc/1/task/59/stat on Linux 6.18; comm, utime and stime edited.
    // cutime/cstime (fields 16, 17) are large on purpose: taking them would be a visible bug.
    const PLAIN: &str = "59 (btest-rx-0) S 0 0 0 0 -1 4194624 265 4640567 0 1280 731 268 \
        23018 3069 20 0 13 0 49 46612480 3801 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 \
        0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    // Captured from /proc/self/stat of `cat`; comm, utime and stime edited.
    const WEIRD: &str = "31708 (my (weird) name) R 31706 31706 24390 0 -1 4194304 99 0 0 0 12 30 \
        0 0 20 0 1 0 291539 3133440 414 18446744073709551615 94823366307840 94823366327721 \
        140725770048960 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94823366343728 94823366345344 \
        94823817875456 140725770050273 140725770050293 140725770050293 140725770051563 0\n";

    #[test]
    fn parses_task_stat_fixtures() {
        assert_eq!(parse_task_stat(PLAIN), Some(("btest-rx-0", 731 + 268)));
        assert_eq!(parse_task_stat(WEIRD), Some(("my (weird) name", 42)));
        // A name that looks like the fields that follow it.
        let tricky = "5 (a) R 1 2 3) S 1 5 5 0 -1 0 0 0 0 0 4 6 0 0 20 0 1 0 9 9 9\n";
        assert_eq!(parse_task_stat(tricky), Some(("a) R 1 2 3", 10)));
        assert_eq!(
            parse_task_stat("9 (x y) S 1 1 1 0 -1 0 0 0 0 0 3 4"),
            Some(("x y", 7))
        );
    }

    #[test]
    fn rejects_malformed_task_stat() {
        assert_eq!(parse_task_stat(""), None);
        assert_eq!(parse_task_stat("1 btest R 1 2 3"), None);
        assert_eq!(parse_task_stat("1 )btest( R 1"), None);
        // Truncated before stime.
        assert_eq!(parse_task_stat("1 (t) R 1 1 1 0 -1 0 0 0 0 0 5"), None);
        // Non-numeric utime.
        assert_eq!(parse_task_stat("1 (t) R 1 1 1 0 -1 0 0 0 0 0 x 5 0"), None);
    }

    #[test]
    fn parses_own_live_task() {
        // The kernel keeps 15 bytes of the name std gives it.
        let name = std::thread::Builder::new()
            .name("btest-status-long-name".into())
            .spawn(|| {
                let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                parse_task_stat(&text).unwrap().0.to_string()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(name, "btest-status-lo");
    }

    /// The calling thread's time on a CPU, from the scheduler's own nanosecond account
    /// (/proc/thread-self/schedstat, first field): what the meter's ticks should agree with.
    fn on_cpu() -> Option<Duration> {
        let t = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(Duration::from_nanos(
            t.split_whitespace().next()?.parse().ok()?,
        ))
    }

    /// Busy-loops for `wall` and returns how long this thread actually ran meanwhile, so the
    /// live test can tell a wrong meter from a contended host. The scheduler's account when
    /// there is one; else the sum of the short steps between consecutive clock reads (a
    /// longer step means the scheduler took the core away). That estimate alone took every
    /// preemption under 200 us for running: it said 91.4 % where the meter saw 73.3 % of a
    /// core, on a CI run with four unit-test threads on two cores.
    fn spin(wall: Duration) -> Duration {
        const PREEMPTED: Duration = Duration::from_micros(200);
        let cpu0 = on_cpu();
        let start = Instant::now();
        let mut prev = start;
        let mut ran = Duration::ZERO;
        while prev.duration_since(start) < wall {
            let now = std::hint::black_box(Instant::now());
            let step = now.duration_since(prev);
            if step < PREEMPTED {
                ran += step;
            }
            prev = now;
        }
        match (cpu0, on_cpu()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => ran,
        }
    }

    #[test]
    fn spinning_thread_shows_as_busy() {
        use crate::engine::roles::RoleTable;
        // Slot 0 is a TX role; slot 1 (an RX role) never starts, so it is never sampled.
        let table = RoleTable::new(true, 1, true, false);
        let slot = &table.slots[0];
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Duration>();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        // A thread of the same name that is not in the table (another session's): not
        // sampled, so `after` has one entry.
        let (other_end_tx, other_end_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name(slot.name.clone())
            .spawn(move || other_end_rx.recv())
            .unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                slot.tid.store(crate::sys::gettid(), Relaxed);
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                done_tx.send(spin(Duration::from_millis(300))).unwrap();
                // Stay alive until sampled: an exited thread leaves /proc/self/task.
                end_rx.recv().unwrap();
            });
            ready_rx.recv().unwrap();
            let mut meter = ThreadCpu::new();
            // The baseline includes the (idle) thread, so the next sample is a true delta.
            let before = meter.sample(&table.slots);
            assert_eq!(before.len(), 1, "{before:?}");
            let t1 = Instant::now();
            go_tx.send(()).unwrap();
            let ran = done_rx.recv().unwrap();
            let t2 = Instant::now();
            let after = meter.sample(&table.slots);
            end_tx.send(()).unwrap();
            h.join().unwrap();
            other_end_tx.send(()).unwrap();
            other.join().unwrap().unwrap();
            assert_eq!(after.len(), 1, "{after:?}");
            assert_eq!((after[0].name, after[0].kind), ("btest-tx-0", RoleKind::Tx));
            let measured = after[0].percent_of_core;
            // What the thread itself saw. On an idle host that is ~100 %; on a loaded CI box
            // the neighbours take part of the core, and the meter must agree with the smaller
            // figure. Tolerance: two tick truncations (2 x 10 ms over 300 ms) plus sampling
            // overhead.
            let expected = ran.as_secs_f64() / t2.duration_since(t1).as_secs_f64() * 100.0;
            assert!(
                (measured - expected).abs() < 15.0,
                "measured {measured:.1} %, thread ran {expected:.1} % of the interval"
            );
            if expected > 75.0 {
                assert!(measured > 50.0, "{after:?}");
                let v = verdict(&after, 50.0).unwrap();
                assert!(v.starts_with("tx thread btest-tx-0 at "), "{v}");
            }
        });
    }

    fn load(kind: RoleKind, name: &str, p: f64) -> ThreadLoad<'_> {
        ThreadLoad {
            tid: 1,
            kind,
            name,
            percent_of_core: p,
        }
    }

    #[test]
    fn verdict_names_the_busiest_thread_and_its_role() {
        use RoleKind::*;
        let loads = [
            load(Tx, "btest-tx-0", 40.0),
            load(Rx, "btest-rx-0", 99.2),
            load(Status, "btest-status", 1.0),
        ];
        assert_eq!(
            verdict(&loads, DEFAULT_BUSY_THRESHOLD).as_deref(),
            Some(
                "rx thread btest-rx-0 at 99 % of a core: this host, not the link, limited the rate"
            )
        );
        assert_eq!(
            verdict(&[load(Status, "btest-status", 95.0)], 90.0).as_deref(),
            Some("status thread btest-status at 95 % of a core: this host, not the link, limited the rate")
        );
        assert_eq!(
            verdict(&[load(CtlRx, "btest-ctl-rx", 100.0)], 90.0).as_deref(),
            Some("control thread btest-ctl-rx at 100 % of a core: this host, not the link, limited the rate")
        );
        assert_eq!(verdict(&loads, 99.5), None);
        assert_eq!(verdict(&[], 90.0), None);
    }
}
