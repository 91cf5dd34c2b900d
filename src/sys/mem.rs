//! Keeping the server's memory bounded after sessions end (Linux glibc only; no-ops elsewhere,
//! windows-gnu included: its C library is not glibc).
//!
//! Why (docs/reliability.md, "Memory after load"): glibc malloc keeps freed memory in two ways
//! that add up on a long-running server.
//!
//! - It raises its mmap threshold to the size of each large block freed (up to 32 MiB), so a
//!   session's big buffers (UDP receive batches of up to 4 MiB) come from a heap the second time
//!   and stay there, and its trim threshold with it, so the free top of a heap is kept. One
//!   session at a time grew an idle server to 10.7 MiB in 60 sessions, 19.4 MiB in 1000.
//! - A thread that finds the arenas busy gets an arena of its own (up to 8 per core), and free
//!   memory inside arenas is only given back by `malloc_trim`. 8 waves of 100 concurrent
//!   sessions left an idle server at ~20 MiB (2.6 MiB before).
//!
//! [`tune_allocator`] at server start fixes both thresholds at glibc's defaults (128 KiB):
//! large buffers are mmapped and unmapped when freed. [`release_idle_memory`] after each
//! session gives back the free pages inside every arena. Together: 3.9 MiB idle after the 60
//! sessions, 5.7 MiB after the 8 waves (2 MiB of it thread stacks glibc caches for reuse);
//! either call alone leaves one of the two loads at 12-20 MiB. musl's allocator returns memory
//! by itself (1.0 MiB idle before and after). Capping the arenas (`M_ARENA_MAX`) does not help:
//! the same memory parks in fewer arenas.
//!
//! Must not: be called per packet or per interval; `malloc_trim` walks and locks each arena
//! in turn (0.2 ms median, 1 ms at most, measured with 100 sessions running).

/// The fixed mmap and trim thresholds: glibc's own defaults, which it otherwise raises.
pub const MALLOC_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap and trim thresholds at [`MALLOC_THRESHOLD`] (setting them turns off
/// glibc's dynamic raising of both). Call once at server start, before the accept threads.
/// Returns false if glibc refused; a no-op returning true on other C libraries.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut ok = true;
        for opt in [libc::M_MMAP_THRESHOLD, libc::M_TRIM_THRESHOLD] {
            // SAFETY: mallopt only stores an allocator tunable under glibc's own lock; both
            // options take any non-negative int (128 KiB is within the mmap threshold's
            // 0..=32 MiB range). No pointer is passed.
            ok &= unsafe { libc::mallopt(opt, MALLOC_THRESHOLD) } == 1;
        }
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

/// Returns the free memory inside every malloc arena to the system (glibc `malloc_trim(0)`).
/// Call after a session ended and dropped its sockets and buffers. Returns true if glibc
/// released anything; false on other C libraries (their allocators unmap free memory
/// themselves).
pub fn release_idle_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a byte count to keep at the top of the main heap (0) and
        // no pointers; it locks each arena while it trims it, so it is safe to call while
        // other threads allocate and free.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// Set in the child process that [`allocator_checks_in_a_fresh_process`] runs.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    const CHILD_ENV: &str = "BTEST_MEM_TEST_CHILD";

    /// What each call is for, checked by its effect, not only that it returns. In a child
    /// process: in this one, memory other tests freed can serve a 1 MiB block from a heap
    /// whatever the threshold (malloc looks in its free lists before it mmaps), which failed
    /// 2 full unit runs in 3.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn big_blocks_stay_mmapped_and_freed_pages_go_back() {
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::mem::tests::allocator_checks_in_a_fresh_process",
            ])
            .args(["--ignored", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && out.contains("1 passed"),
            "the child failed: {out}{err}"
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    #[ignore = "run in a child process by big_blocks_stay_mmapped_and_freed_pages_go_back"]
    fn allocator_checks_in_a_fresh_process() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        const BIG: usize = 1 << 20;
        // glibc's usable size of a block: `size - 8` from a heap, but for an mmapped block the
        // size is the request rounded up to whole pages, less a 16-byte header (1 MiB asked:
        // 1 MiB + 4080 usable). So a big slack tells an mmapped block from a heap one.
        fn slack_of_big_block() -> usize {
            // SAFETY: malloc/free pair on a block of our own; malloc_usable_size reads only
            // the header of the live block malloc just returned (checked non-null).
            unsafe {
                let p = libc::malloc(BIG);
                assert!(!p.is_null());
                let usable = libc::malloc_usable_size(p);
                libc::free(p);
                usable - BIG
            }
        }
        assert!(super::tune_allocator());
        // Untuned, glibc would raise its mmap threshold past 1 MiB when the first block is
        // freed and serve the second from a heap (where it stays when freed): the growth of
        // docs/reliability.md, "Memory after load". Tuned, every such block is mmapped.
        for round in 0..3 {
            let slack = slack_of_big_block();
            assert!(
                slack >= 4096 - 16,
                "round {round}: a 1 MiB block came from a heap (usable size 1 MiB + {slack} \
                 B), so glibc raised its mmap threshold: tune_allocator did not fix it"
            );
        }
        // A hole in a heap: many blocks below the threshold, all freed but the last, which
        // pins the heap's top (free() itself trims only at the top). Only malloc_trim gives
        // the hole's pages back, and it says so.
        let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 16 << 10]).collect();
        let pin = vec![1u8; 64];
        drop(blocks);
        assert!(
            super::release_idle_memory(),
            "4 MiB freed inside a heap, yet release_idle_memory released nothing"
        );
        drop(pin);
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    #[test]
    fn allocator_calls_are_no_ops_off_glibc() {
        assert!(super::tune_allocator());
        assert!(!super::release_idle_memory());
    }
}
