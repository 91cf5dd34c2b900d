//! The usage store as a build without the `quotas` feature has it: none. The router image
//! leaves byte quotas out (they keep usage on disk, synced every 10 s, which router flash
//! does not want, and they cost the image about 35 KiB); `--state-dir` and byte limits are
//! refused at start with a message naming the feature (accounting.rs).
//!
//! `Store` has no values, so an `Option<Store>` is always `None` and everything behind one is
//! compiled out. Must not: gain behaviour; it only gives accounting.rs the types it names.

/// Bytes of one key in one period, as the client sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    /// What the client sent.
    pub up: u64,
    /// What the client received.
    pub down: u64,
}

/// No store: this type has no values.
pub enum Store {}

/// What [`Store::lock`] would hand out; no values either.
pub struct Held(Store);

impl Store {
    /// Never called: there is no store to lock.
    pub fn lock(&self) -> Held {
        match *self {}
    }

    /// Never called.
    pub fn sync(&self) -> std::io::Result<()> {
        match *self {}
    }
}

impl Held {
    /// Never called.
    pub fn add(&mut self, _: &str, _: &str, _: Bytes) {
        match self.0 {}
    }

    /// Never called.
    pub fn get(&self, _: &str, _: &str) -> Bytes {
        match self.0 {}
    }

    /// Never called.
    pub fn entries(&self) -> Vec<(String, String, Bytes)> {
        match self.0 {}
    }
}
