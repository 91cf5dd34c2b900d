//! The one way the program starts a thread beside `main`: named (for `top -H`, gdb and logs;
//! names are for humans, nothing reads them back), on [`THREAD_STACK`], and optionally counted
//! in a live-thread gauge through a [`Registration`].
//!
//! The gauge is kept in tiny-http's `Registration` shape (its `src/util/task_pool.rs`): the
//! count goes up when the registration is made and down when it is dropped, and the
//! registration is moved into the thread's closure. A thread that ends (returns or panics)
//! drops its closure's captures; a spawn that fails drops the closure unrun. Either way the
//! gauge goes down exactly once, with no hand-written decrement on an error path (issue 20:
//! the server's accept loop had one, the engine another style).
//!
//! Must not: know what a thread does (engine/roles.rs adds the session's stop and thread id),
//! or retry a failed spawn (the caller decides what the failure means in its phase).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

/// Stack of every thread the program starts beside `main` (roles, handshakes, probe, echo,
/// HTTP connections, writers): they keep their buffers on the heap, so 256 KiB is plenty
/// (docs/bench.md has the measurement) and keeps per-connection memory small on routers. One
/// definition (issue 20: it was written five times).
pub const THREAD_STACK: usize = 256 * 1024;

/// One live thread counted in a gauge: +1 when made, -1 when dropped.
#[derive(Debug)]
pub struct Registration(Option<Arc<AtomicUsize>>);

impl Registration {
    /// Counts one more thread in `gauge` (nothing when `None`).
    pub fn new(gauge: Option<&Arc<AtomicUsize>>) -> Registration {
        if let Some(g) = gauge {
            g.fetch_add(1, SeqCst);
        }
        Registration(gauge.cloned())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.fetch_sub(1, SeqCst);
        }
    }
}

/// Not generic, so every call site shares it.
fn builder(name: &str) -> Builder {
    Builder::new()
        .name(name.to_string())
        .stack_size(THREAD_STACK)
}

/// Starts thread `name` running `f`, counted in `gauge` while it lives. On `Err` nothing runs
/// and the gauge is back where it was.
pub fn spawn_named<T, F>(
    name: &str,
    gauge: Option<&Arc<AtomicUsize>>,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_on(builder(name), gauge, f)
}

/// [`spawn_named`] on a given builder (the tests' way to make a spawn fail).
fn spawn_on<T, F>(b: Builder, gauge: Option<&Arc<AtomicUsize>>, f: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let reg = Registration::new(gauge);
    b.spawn(move || {
        let _reg = reg;
        f()
    })
}

/// [`spawn_named`] inside a `std::thread::scope`.
pub fn spawn_scoped_named<'scope, 'env, T, F>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    gauge: Option<&Arc<AtomicUsize>>,
    f: F,
) -> io::Result<ScopedJoinHandle<'scope, T>>
where
    T: Send + 'scope,
    F: FnOnce() -> T + Send + 'scope,
{
    let reg = Registration::new(gauge);
    builder(name).spawn_scoped(scope, move || {
        let _reg = reg;
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_thread_leaves_the_gauge_where_it_was() {
        let g = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = spawn_named("btest-test-ok", Some(&g), move || {
            go_rx.recv().unwrap();
            std::thread::current().name().map(str::to_string)
        })
        .unwrap();
        // Counted while it runs (it is parked on the channel).
        assert_eq!(g.load(SeqCst), 1);
        go_tx.send(()).unwrap();
        assert_eq!(h.join().unwrap().as_deref(), Some("btest-test-ok"));
        assert_eq!(g.load(SeqCst), 0);
        // Without a gauge: just a named thread.
        let h = spawn_named("btest-test-none", None, || 7).unwrap();
        assert_eq!(h.join().unwrap(), 7);
    }

    #[test]
    fn a_panicking_thread_is_uncounted_once() {
        let g = Arc::new(AtomicUsize::new(0));
        let h = spawn_named("btest-test-panic", Some(&g), || -> u8 { panic!("boom") }).unwrap();
        assert!(h.join().is_err());
        assert_eq!(g.load(SeqCst), 0);
        std::thread::scope(|s| {
            let h =
                spawn_scoped_named(s, "btest-test-panic", Some(&g), || -> u8 { panic!("boom") })
                    .unwrap();
            assert!(h.join().is_err());
        });
        assert_eq!(g.load(SeqCst), 0);
    }

    /// A failed spawn: std drops the closure, and the registration in it, unrun. Made to fail
    /// for real: no address space holds a 4 EiB stack, so the stack's mmap fails (ENOMEM from
    /// glibc, EAGAIN from musl) before any thread exists.
    #[test]
    fn a_failed_spawn_is_uncounted_once() {
        let g = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let r = {
            let ran = ran.clone();
            spawn_on(Builder::new().stack_size(1 << 62), Some(&g), move || {
                ran.fetch_add(1, SeqCst);
            })
        };
        assert!(r.is_err(), "a 4 EiB stack was granted");
        assert_eq!(ran.load(SeqCst), 0);
        assert_eq!(g.load(SeqCst), 0);
        // And by construction: a closure dropped unrun (what std does above).
        let reg = Registration::new(Some(&g));
        let f = move || drop(reg);
        assert_eq!(g.load(SeqCst), 1);
        drop(f);
        assert_eq!(g.load(SeqCst), 0);
    }
}
