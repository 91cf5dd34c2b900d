//! The live-session registry as a build without the `http` feature has it: nothing to keep.
//! Only `--http` reads the registry (per-second history, the aggregate graph, ended
//! sessions), so the router image, which has no `--http`, leaves it out (issue 19: about
//! 8 KiB of a budget that was gone). Must not: gain behaviour.

use std::sync::Arc;

use crate::engine::Take;

pub use super::SessionInfo;

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
