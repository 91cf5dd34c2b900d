//! Lines for standard output written by a thread of their own (`btest-stdout`), so no other
//! thread ever blocks on a slow or stopped reader (issue 18: with the `--json` pipe full, the
//! server's main thread blocked in a write and ignored SIGTERM for 15 s; when the reader
//! exited, the server exited 0 and cut every session).
//!
//! The queue is bounded: a line that finds it full is dropped and counted, the first drop and
//! the total are logged. A closed or failing stdout is logged once and later lines are
//! discarded; the caller goes on (its other records, `--csv` and `--syslog`, do not depend on
//! stdout).
//!
//! Must not: block its caller, or end the process.

use crate::atomic::AtomicU64;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

/// Lines queued for stdout at most (a session record is one line).
pub const QUEUE: usize = 4096;

/// The writer: a queue and its thread.
pub struct LineOut {
    tx: Option<Sender<String>>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LineOut {
    /// Starts `btest-stdout` over the process's standard output.
    pub fn spawn() -> std::io::Result<LineOut> {
        LineOut::spawn_to(QUEUE, std::io::stdout)
    }

    /// Starts the writer over `out` (tests give it a blocking or failing writer).
    pub fn spawn_to<W: Write, F: FnOnce() -> W + Send + 'static>(
        queue: usize,
        out: F,
    ) -> std::io::Result<LineOut> {
        let (tx, rx) = crossbeam_channel::bounded::<String>(queue);
        let thread = crate::thread::spawn_named("btest-stdout", None, move || {
            let mut out = out();
            let mut closed = false;
            for line in rx {
                if closed {
                    continue;
                }
                if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
                    log::warn!(
                            "standard output failed ({e}); records are no longer printed there (--csv and --syslog go on)"
                        );
                    closed = true;
                }
            }
        })?;
        Ok(LineOut {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
            thread: Some(thread),
        })
    }

    /// Queues one line; never blocks. A full queue drops it (counted; the first is logged).
    pub fn send(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Relaxed) == 0 {
                    log::warn!(
                        "standard output is not being read: {QUEUE} lines are waiting, further lines are dropped (counted)"
                    );
                }
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Lets the writer finish what is queued, for at most `grace`; a writer still blocked
    /// then (nobody reads stdout) is left behind. Returns whether it finished.
    pub fn finish(mut self, grace: Duration) -> bool {
        drop(self.tx.take());
        let n = self.dropped();
        if n > 0 {
            log::warn!("{n} line(s) for standard output were dropped: it was not being read");
        }
        let Some(t) = self.thread.take() else {
            return true;
        };
        let until = Instant::now() + grace;
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
            true
        } else {
            log::warn!("standard output is blocked; leaving {QUEUE} line(s) at most unwritten");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that blocks until released, like a full pipe nobody reads.
    struct Stuck(Arc<Mutex<()>>);
    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _g = self.0.lock().unwrap();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_never_reads_costs_the_caller_nothing() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = gate.clone();
        let out = LineOut::spawn_to(8, move || Stuck(g)).unwrap();
        let t0 = Instant::now();
        for i in 0..10_000 {
            out.send(format!("line {i}"));
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        // 8 queued, at most one in the writer's hands: the rest dropped and counted.
        assert!(out.dropped() >= 10_000 - 9, "{}", out.dropped());
        let t0 = Instant::now();
        assert!(!out.finish(Duration::from_millis(200)), "still blocked");
        assert!(t0.elapsed() < Duration::from_secs(1));
        drop(held);
    }

    /// A writer whose reader went away.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_is_given_up_and_the_caller_goes_on() {
        let out = LineOut::spawn_to(8, || Closed).unwrap();
        for i in 0..100 {
            out.send(format!("line {i}"));
            std::thread::sleep(Duration::from_micros(100));
        }
        assert!(out.finish(Duration::from_secs(5)), "the writer ends");
    }

    #[test]
    fn lines_arrive_in_order() {
        let got = Arc::new(Mutex::new(Vec::new()));
        struct Into(Arc<Mutex<Vec<u8>>>);
        impl Write for Into {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let g = got.clone();
        let out = LineOut::spawn_to(64, move || Into(g)).unwrap();
        out.send("a".into());
        out.send("b".into());
        assert!(out.finish(Duration::from_secs(5)));
        assert_eq!(&*got.lock().unwrap(), b"a\nb\n");
    }
}
