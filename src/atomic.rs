//! The 64-bit atomic integers every counter, rate and budget uses: std's where the target has
//! 64-bit atomic instructions, portable-atomic's where it has not (issue 21).
//!
//! Owns: the one place that picks the type. Must not: hold state or add anything to a target
//! that has 64-bit atomics. On x86_64, aarch64 and armv7 (which has `ldrexd`/`strexd`) these
//! are `std::sync::atomic::{AtomicU64, AtomicI64}` themselves, so that code is unchanged.
//!
//! MIPS32 (`mips`/`mipsel-unknown-linux-musl`, the OpenWrt ath79 and ramips routers) has only
//! 32-bit LL/SC, and std has no `AtomicU64` there. portable-atomic (target-gated in Cargo.toml,
//! feature `fallback`) gives the same API, `Ordering` arguments included; a 64-bit add is a
//! write under one of its striped spinlocks (a seqlock: readers never take it). Why that is
//! acceptable on the per-packet path, and why not 32-bit counters: docs/architecture.md
//! section 6.

#[cfg(target_has_atomic = "64")]
pub use std::sync::atomic::{AtomicI64, AtomicU64};

#[cfg(not(target_has_atomic = "64"))]
pub use portable_atomic::{AtomicI64, AtomicU64};
