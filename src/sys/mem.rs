//! Keeping the server's memory bounded after sessions end (glibc only; no-ops elsewhere).
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
    #[cfg(target_env = "gnu")]
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
    #[cfg(not(target_env = "gnu"))]
    {
        true
    }
}

/// Returns the free memory inside every malloc arena to the system (glibc `malloc_trim(0)`).
/// Call after a session ended and dropped its sockets and buffers. Returns true if glibc
/// released anything; false on other C libraries (their allocators unmap free memory
/// themselves).
pub fn release_idle_memory() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes a byte count to keep at the top of the main heap (0) and
        // no pointers; it locks each arena while it trims it, so it is safe to call while
        // other threads allocate and free.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn allocator_calls_are_harmless() {
        assert!(super::tune_allocator());
        // Something big freed on another thread (its own arena), then a trim; what glibc
        // releases depends on the allocator's state, so only the calls are tested here.
        std::thread::spawn(|| drop(std::hint::black_box(vec![1u8; 4 << 20])))
            .join()
            .unwrap();
        let _ = super::release_idle_memory();
        let v = vec![2u8; 1 << 20];
        assert_eq!(v.iter().map(|&b| u64::from(b)).sum::<u64>(), 2 << 20);
    }
}
