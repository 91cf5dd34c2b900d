//! The live-session registry as a build without the `http` feature has it: nothing to keep.
//! Only `--http` reads the registry (per-second history, the aggregate graph, ended
//! sessions), so the router image, which has no `--http`, leaves it out (issue 19: about
//! 8 KiB of a budget that was gone). Must not: gain behaviour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::engine::Take;

/// What does not change during a session (kept for the same call as the full registry).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub peer: SocketAddr,
    pub user: Option<String>,
    pub protocol: &'static str,
    pub direction: &'static str,
    pub connections: usize,
    pub started: SystemTime,
    pub cap_bps: Option<u64>,
}

/// A session nobody watches.
#[derive(Debug)]
pub struct LiveSession;

impl LiveSession {
    /// Nothing to add to.
    pub fn add(&self, _: &Take) {}
}

/// No registry.
#[derive(Debug, Default)]
pub struct Registry(());

impl Registry {
    /// Nothing is registered.
    pub fn start(&self, _: SessionInfo) -> Arc<LiveSession> {
        Arc::new(LiveSession)
    }

    /// Nothing to remove.
    pub fn end(&self, _: &LiveSession, _: &str) {}
}
