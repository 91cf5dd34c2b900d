//! Accounts and quotas at run time: which limits apply to a session (its user's `limit` line,
//! every `--source-limit` whose scope holds its address), whether it may start, what it may
//! use, and the bytes it used, kept durably in usage.rs under `--state-dir`.
//!
//! A session is admitted with a [`Grant`]. Its byte quotas are enforced on the data path: each
//! quota of each key (a user's daily total, an address's weekly upload) is one
//! [`Pool`] shared by every session counting against it, which the session's
//! TX and RX threads take their bytes from with one atomic per call (engine/budget.rs), so a
//! quota is passed by at most one read per RX thread at any rate, however many sessions share
//! it (issue 18: the once-a-second check let a 10 MB quota pass by 0.36-1.18 GB). The status
//! thread still charges the durable store with each take's bytes (about once a second), which
//! is what survives a restart, and refills a pool when its period turns. Usage is written
//! (fsync) when a session ends and every [`SYNC_EVERY`] by the guard thread, so a crash loses
//! at most that much of a long session's count.
//!
//! Keys name what is counted: `user:NAME`, `addr:IP` (an IPv4 address or an IPv6 /64, as the
//! handshake caps count hosts), `net:PREFIX/LEN`. Must not: touch sockets or sessions (the
//! caller stops the session with the reason this returns).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::quota::{self, ByteLimit, LimitSet, Window};
#[cfg(feature = "quotas")]
use super::usage;
use super::usage::{Bytes, Store};
use crate::authio::ServerAccounts;
use crate::cidr::{canonical, Cidr};
use crate::config::{ServerConfig, SourceScope};
use crate::engine::budget::{self, Budget, Pool};
use crate::error::{Error, Result};

/// Usage is fsynced at least this often while sessions run.
pub const SYNC_EVERY: Duration = Duration::from_secs(10);
/// The log is rewritten (old periods dropped) after this many appended records.
#[cfg(feature = "quotas")]
const COMPACT_AFTER: usize = 10_000;

/// The limits of one key.
#[derive(Debug, Clone)]
struct Keyed {
    key: String,
    limits: LimitSet,
}

/// The server's accounts, limits and usage.
pub struct Accounting {
    /// The users file's limit lines; replaced whole by a reload (SIGHUP).
    users: Mutex<HashMap<String, LimitSet>>,
    sources: Vec<(SourceScope, LimitSet)>,
    /// Its own two locks: `lock()` (map operations only) and the writer's (usage.rs).
    store: Option<Store>,
    active: Mutex<HashMap<String, usize>>,
    synced: Mutex<Instant>,
    /// The data-path pools of the quotas sessions now count against; a pool lives while a
    /// session holds it (dropped with the last [`Grant`]; the store has every byte by then).
    pools: Mutex<HashMap<PoolKey, PoolSlot>>,
}

/// One byte quota of one key: (key, window, direction, limit). A limit changed by a reload
/// is a new pool: running sessions keep the one they were admitted with.
type PoolKey = (String, Window, quota::Dir, u64);

struct PoolSlot {
    pool: Arc<Pool>,
    /// The period the pool counts in; a new period refills it from the store.
    bucket: String,
}

/// A quota a session's bytes are taken from, and what the status thread needs to refill it.
struct Charged {
    key: PoolKey,
    limit: u64,
    pool: Arc<Pool>,
}

/// What a session was granted; dropping it ends the session's count.
pub struct Grant {
    acc: Arc<Accounting>,
    /// Keys with byte quotas, charged with the session's bytes.
    charged: Vec<Keyed>,
    /// Keys whose concurrent sessions this one counts in.
    counted: Vec<String>,
    /// The pools of every byte quota that applies.
    quotas: Vec<Charged>,
    /// The shortest `duration=` that applies.
    pub duration: Option<Duration>,
    /// The lowest `rate=` that applies.
    pub rate: Option<u64>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(feature = "quotas")]
fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Usage(format!(
        "cannot {what} the usage store in {} ({e}); check that the directory exists and is writable, or choose another --state-dir",
        path.display()
    ))
}

/// One quota's use in its current period: a row of `GET /api/quotas` (the API renders it;
/// the accounting owns it, issue 20).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaRow {
    /// `user:NAME`, `addr:IP` or `net:PREFIX`.
    pub key: String,
    /// `day`, `week`, `month`.
    pub window: &'static str,
    /// `up`, `down`, `total`.
    pub dir: &'static str,
    pub used: u64,
    pub limit: u64,
}

impl Accounting {
    /// From the configuration and the users file's `limit` lines. Byte quotas need
    /// `--state-dir`: counted only in memory, a restart would silently give every user a
    /// fresh quota.
    pub fn new(cfg: &ServerConfig, accounts: &ServerAccounts) -> Result<Accounting> {
        let users = user_limits(cfg, accounts)?;
        let mut sources = Vec::new();
        for s in &cfg.source_limits {
            let limits = quota::parse_limits(&s.spec)
                .map_err(|e| Error::Usage(format!("--source-limit: {e}")))?;
            sources.push((s.scope, limits));
        }
        let wants_bytes = users.values().any(|l| !l.bytes.is_empty())
            || sources.iter().any(|(_, l)| !l.bytes.is_empty());
        if cfg!(not(feature = "quotas")) && (wants_bytes || cfg.state_dir.is_some()) {
            return Err(Error::Usage(
                "byte quotas (day=, week=, month=, ...) and --state-dir: this btest was built without them (cargo feature 'quotas', left out of the router image: usage is written to disk every 10 s); use the full build".into(),
            ));
        }
        let store = match (&cfg.state_dir, wants_bytes) {
            (Some(dir), _) => Some(open_store(dir)?),
            (None, true) => {
                return Err(Error::Usage(
                    "byte quotas (day=, week=, month=, ...) need --state-dir DIR, where usage is kept across restarts".into(),
                ))
            }
            (None, false) => None,
        };
        Ok(Accounting {
            users: Mutex::new(users),
            sources,
            store,
            active: Mutex::new(HashMap::new()),
            synced: Mutex::new(Instant::now()),
            pools: Mutex::new(HashMap::new()),
        })
    }

    /// Takes the `limit` lines of a reloaded users file (SIGHUP), checked first: on an error
    /// nothing changes. Running sessions keep the limits they were admitted with. Returns
    /// what changed, one phrase per user.
    pub fn reload_users(
        &self,
        cfg: &ServerConfig,
        accounts: &ServerAccounts,
    ) -> Result<Vec<String>> {
        let new = user_limits(cfg, accounts)?;
        if self.store.is_none() && new.values().any(|l| !l.bytes.is_empty()) {
            return Err(Error::Usage(
                "the reloaded users file has byte quotas, which need --state-dir (set when the server starts)".into(),
            ));
        }
        let mut users = self.users.lock();
        let mut changes = Vec::new();
        for (u, l) in &new {
            match users.get(u) {
                None => changes.push(format!("limit for '{}' added", crate::text::Esc(u))),
                Some(old) if old != l => {
                    changes.push(format!("limit for '{}' changed", crate::text::Esc(u)))
                }
                Some(_) => {}
            }
        }
        for u in users.keys().filter(|u| !new.contains_key(*u)) {
            changes.push(format!("limit for '{}' removed", crate::text::Esc(u)));
        }
        *users = new;
        Ok(changes)
    }

    /// Does any limit or the store exist? Without, admission is free.
    pub fn is_empty(&self) -> bool {
        self.users.lock().is_empty() && self.sources.is_empty() && self.store.is_none()
    }

    fn applicable(&self, user: Option<&str>, ip: IpAddr) -> Vec<Keyed> {
        let ip = canonical(ip);
        let mut out = Vec::new();
        if let Some(u) = user {
            if let Some(l) = self.users.lock().get(u) {
                out.push(Keyed {
                    key: format!("user:{u}"),
                    limits: l.clone(),
                });
            }
        }
        for (scope, l) in &self.sources {
            let key = match (*scope, ip) {
                (SourceScope::Addr, IpAddr::V4(a)) => format!("addr:{a}"),
                (SourceScope::Addr, IpAddr::V6(_)) => format!("addr:{}", Cidr::of(ip, 64)),
                (SourceScope::V4(n), IpAddr::V4(_)) | (SourceScope::V6(n), IpAddr::V6(_)) => {
                    format!("net:{}", Cidr::of(ip, n))
                }
                _ => continue,
            };
            out.push(Keyed {
                key,
                limits: l.clone(),
            });
        }
        out
    }

    /// May a session of `user` from `ip` start now? The refusal says which limit and when it
    /// resets.
    pub fn admit(
        self: &Arc<Self>,
        user: Option<&str>,
        ip: IpAddr,
        now: SystemTime,
    ) -> std::result::Result<Grant, String> {
        let keyed = self.applicable(user, ip);
        let now = unix(now);
        let quotas = self.pools_of(&keyed, now)?;
        let mut active = self.active.lock();
        for k in &keyed {
            if let Some(max) = k.limits.sessions {
                let n = active.get(&k.key).copied().unwrap_or(0);
                if n >= max {
                    return Err(format!(
                        "{} already has {n} session(s) running, its limit (sessions={max})",
                        k.key
                    ));
                }
            }
        }
        let counted: Vec<String> = keyed
            .iter()
            .filter(|k| k.limits.sessions.is_some())
            .map(|k| k.key.clone())
            .collect();
        for k in &counted {
            *active.entry(k.clone()).or_insert(0) += 1;
        }
        drop(active);
        Ok(Grant {
            acc: self.clone(),
            duration: keyed.iter().filter_map(|k| k.limits.duration).min(),
            rate: keyed.iter().filter_map(|k| k.limits.rate).min(),
            charged: keyed
                .into_iter()
                .filter(|k| !k.limits.bytes.is_empty())
                .collect(),
            counted,
            quotas,
        })
    }

    /// The pool of every byte quota in `keyed`, created from the store's count for the
    /// current period where no session holds one yet, refilled where the period turned; the
    /// first one used up refuses the session.
    fn pools_of(&self, keyed: &[Keyed], now: u64) -> std::result::Result<Vec<Charged>, String> {
        let mut out = Vec::new();
        for k in keyed {
            for l in &k.limits.bytes {
                let key = (k.key.clone(), l.window, l.dir, l.bytes);
                let pool = self.pool(&key, l.bytes, now);
                if pool.left() < budget::MIN_LEFT {
                    let used = l.bytes.saturating_sub(pool.left());
                    return Err(quota_message(&k.key, l, used, now));
                }
                out.push(Charged {
                    key,
                    limit: l.bytes,
                    pool,
                });
            }
        }
        Ok(out)
    }

    /// The pool of one quota in the period holding `now` (created or refilled from the store).
    fn pool(&self, key: &PoolKey, limit: u64, now: u64) -> Arc<Pool> {
        let bucket = key.1.bucket(now);
        let used = |bucket: &str| {
            self.store.as_ref().map_or(0, |st| {
                let b = st.lock().get(&key.0, bucket);
                key.2.of(b.up, b.down)
            })
        };
        let mut pools = self.pools.lock();
        match pools.get_mut(key) {
            Some(slot) if slot.bucket == bucket => slot.pool.clone(),
            Some(slot) => {
                // A new period: what the store counted in it (nothing, unless the clock went
                // back and forth) is what is used.
                slot.pool.set(limit.saturating_sub(used(&bucket)));
                slot.bucket = bucket;
                slot.pool.clone()
            }
            None => {
                let pool = Arc::new(Pool::new(limit.saturating_sub(used(&bucket))));
                pools.insert(
                    key.clone(),
                    PoolSlot {
                        pool: pool.clone(),
                        bucket,
                    },
                );
                pool
            }
        }
    }

    /// The guard thread's periodic work: fsync pending usage, compact a long log. The disk
    /// I/O runs under the store's writer lock only, never the lock `admit` and `charge` take.
    pub fn tick(&self, now: Instant) {
        let Some(store) = &self.store else { return };
        {
            let mut last = self.synced.lock();
            if now.duration_since(*last) < SYNC_EVERY {
                return;
            }
            *last = now;
        }
        if let Err(e) = store.sync() {
            log::warn!(
                "cannot write byte usage ({e}); counting goes on in memory, retried in {} s",
                SYNC_EVERY.as_secs()
            );
        }
        #[cfg(feature = "quotas")]
        if store.appended() > COMPACT_AFTER {
            let t = unix(SystemTime::now());
            match store.compact(|b| current_or_later(b, t), t) {
                Ok(c) => report_compaction(&c),
                Err(e) => log::warn!(
                    "cannot compact the usage log ({e}); it keeps growing until this works"
                ),
            }
        }
    }

    /// Writes pending usage now (session end, server shutdown).
    pub fn flush(&self) {
        if let Some(store) = &self.store {
            if let Err(e) = store.sync() {
                log::warn!(
                    "cannot write byte usage ({e}); counting goes on in memory, retried in {} s",
                    SYNC_EVERY.as_secs()
                );
            }
        }
    }

    /// Quota usage in the current periods, for `/api/quotas`: every user with a byte quota,
    /// and every source key with usage.
    #[cfg(feature = "http")]
    pub fn quota_rows(&self, now: SystemTime) -> Vec<QuotaRow> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let now = unix(now);
        let store = store.lock();
        let mut keys: Vec<Keyed> = self
            .users
            .lock()
            .iter()
            .filter(|(_, l)| !l.bytes.is_empty())
            .map(|(u, l)| Keyed {
                key: format!("user:{u}"),
                limits: l.clone(),
            })
            .collect();
        let mut source_keys: Vec<String> = store
            .entries()
            .into_iter()
            .map(|(key, _, _)| key)
            .filter(|k| !k.starts_with("user:"))
            .collect();
        // `entries()` is sorted by key, so a key's buckets sit side by side: one row set each.
        source_keys.dedup();
        for key in source_keys {
            if let Some(limits) = self.source_limits_of(&key) {
                keys.push(Keyed { key, limits });
            }
        }
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        let mut rows = Vec::new();
        for k in keys {
            for l in &k.limits.bytes {
                let b = store.get(&k.key, &l.window.bucket(now));
                rows.push(QuotaRow {
                    key: k.key.clone(),
                    window: l.window.as_str(),
                    dir: l.dir.as_str(),
                    used: l.dir.of(b.up, b.down),
                    limit: l.bytes,
                });
            }
        }
        rows
    }

    /// The `--source-limit` a stored source key was counted under.
    #[cfg(feature = "http")]
    fn source_limits_of(&self, key: &str) -> Option<LimitSet> {
        let (kind, rest) = key.split_once(':')?;
        let scope = match kind {
            "addr" => SourceScope::Addr,
            "net" => {
                let (ip, len) = rest.rsplit_once('/')?;
                let len: u8 = len.parse().ok()?;
                match ip.parse::<IpAddr>().ok()? {
                    IpAddr::V4(_) => SourceScope::V4(len),
                    IpAddr::V6(_) => SourceScope::V6(len),
                }
            }
            _ => return None,
        };
        self.sources
            .iter()
            .find(|(s, l)| *s == scope && !l.bytes.is_empty())
            .map(|(_, l)| l.clone())
    }
}

/// The users file's `limit` lines, checked: each names an account, at most one per user.
fn user_limits(cfg: &ServerConfig, accounts: &ServerAccounts) -> Result<HashMap<String, LimitSet>> {
    let mut users = HashMap::new();
    let file = cfg
        .users_file
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    for (line, user, spec) in accounts.limit_lines() {
        let at = format!("{file}:{line}");
        let limits = quota::parse_limits(spec)
            .map_err(|e| Error::Usage(format!("{at}: limit {user}: {e}")))?;
        if !accounts.has_user(user) {
            return Err(Error::Usage(format!(
                "{at}: limit for '{user}', who has no account in the file or --user; add 'USER:PASSWORD' or fix the name"
            )));
        }
        if users.insert(user.clone(), limits).is_some() {
            return Err(Error::Usage(format!(
                "{at}: a second limit line for '{user}'; put all of its limits on one line"
            )));
        }
    }
    Ok(users)
}

/// Without the `quotas` feature there is no store; `new` has refused `--state-dir` already.
#[cfg(not(feature = "quotas"))]
fn open_store(_: &Path) -> Result<Store> {
    Err(Error::Usage(
        "--state-dir: built without the 'quotas' feature".into(),
    ))
}

/// Opens the usage store and compacts it. Refuses only what would silently reset usage: a
/// state directory that cannot be made or a log that cannot be read. A write error (a full
/// disk, a read-only file) is a warning: the server counts in memory and every sync
/// retries, as at run time (issue 18: a full disk used to stop the server from starting).
#[cfg(feature = "quotas")]
fn open_store(dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "create", e))?;
    let (store, report) = Store::open(dir).map_err(|e| io_err(dir, "read", e))?;
    let path = dir.join(usage::FILE_NAME);
    let path = path.display();
    if report.torn_tail_bytes > 0 {
        log::warn!(
            "{path}: cut a torn last record of {} byte(s) (a crash while writing; it was never acknowledged, so nothing counted is lost)",
            report.torn_tail_bytes
        );
    }
    if report.newer_lines > 0 {
        log::warn!(
            "{path}: {} line(s) of a newer btest version are kept as they are and not counted by this one",
            report.newer_lines
        );
    }
    if let Some(e) = &report.write_error {
        log::warn!(
            "cannot write the usage store {path} ({e}); serving and counting in memory, retried every {} s: free space or fix the permissions of {}",
            SYNC_EVERY.as_secs(),
            dir.display()
        );
    }
    let t = unix(SystemTime::now());
    let compacted = store.compact(|b| current_or_later(b, t), t);
    if let Err(e) = &compacted {
        log::warn!("cannot compact the usage log {path} at start ({e}); it is kept as it is and compaction is retried as it grows");
    }
    // Nothing readable at all: not silently zero usage.
    if report.bad_lines > 0 && report.records == 0 && report.newer_lines == 0 {
        let now_in = match &compacted {
            Ok(c) => c
                .rejected_to
                .as_ref()
                .map_or_else(|| path.to_string(), |p| p.display().to_string()),
            Err(_) => path.to_string(),
        };
        log::error!(
            "{path} held no usage record this btest can read ({} unreadable line(s), now in {now_in}): byte usage starts from zero. If it was a real usage log (a bad restore, a disk error), stop the server, put the good log back as {path}, and start it again",
            report.bad_lines
        );
    } else if report.bad_lines > 0 {
        match &compacted {
            Ok(c) => report_compaction(c),
            Err(_) => log::warn!(
                "{path}: skipped {} unreadable line(s), left in place; the rest of the usage is kept",
                report.bad_lines
            ),
        }
    }
    log::debug!(
        "usage store {}: {} record(s) replayed",
        dir.display(),
        report.records
    );
    Ok(store)
}

/// Names the side file a compaction moved unreadable lines to.
#[cfg(feature = "quotas")]
fn report_compaction(c: &usage::Compacted) {
    if let Some(side) = &c.rejected_to {
        log::warn!(
            "moved {} unreadable line(s) of the usage log to {} (not counted; kept for inspection, delete it when done)",
            c.rejected_lines,
            side.display()
        );
    }
}

/// Keep a bucket while its period has not passed (a clock set back keeps the later ones).
#[cfg(feature = "quotas")]
fn current_or_later(bucket: &str, now: u64) -> bool {
    match Window::of_bucket(bucket) {
        Some(w) => bucket >= w.bucket(now).as_str(),
        None => true,
    }
}

/// Why a used-up quota refuses or ends a session.
fn quota_message(key: &str, l: &ByteLimit, used: u64, now: u64) -> String {
    format!(
        "{key} used {} of its {} {} quota of {}; it resets at {}",
        quota::format_bytes(used),
        l.window.adjective(),
        l.dir.as_str(),
        quota::format_bytes(l.bytes),
        quota::utc(l.window.next_start(now))
    )
}

impl Grant {
    /// Charges one take's bytes (`sent` by the server = the client's down). Returns why the
    /// session must stop when a quota of any of its keys is used up.
    pub fn charge(&self, sent: u64, received: u64, now: SystemTime) -> Option<String> {
        if self.charged.is_empty() || (sent == 0 && received == 0) {
            return None;
        }
        let store = self.acc.store.as_ref()?;
        let now = unix(now);
        {
            let mut store = store.lock();
            let b = Bytes {
                up: received,
                down: sent,
            };
            for k in &self.charged {
                // Each window the key has a quota in, once (a day total and a day up share one).
                for w in Window::ALL {
                    if k.limits.bytes.iter().any(|l| l.window == w) {
                        store.add(&k.key, &w.bucket(now), b);
                    }
                }
            }
        }
        // A period that turned refills its pool (the pool call does it, once per pool).
        for q in &self.quotas {
            self.acc.pool(&q.key, q.limit, now);
        }
        self.over(now)
    }

    /// The first used-up quota of this session, as a message.
    pub fn over(&self, now: u64) -> Option<String> {
        let q = self
            .quotas
            .iter()
            .find(|q| q.pool.left() < budget::MIN_LEFT)?;
        let l = ByteLimit {
            window: q.key.1,
            dir: q.key.2,
            bytes: q.limit,
        };
        Some(quota_message(
            &q.key.0,
            &l,
            q.limit.saturating_sub(q.pool.left()),
            now,
        ))
    }

    /// The data-path budget: sent bytes go to the client's down and total quotas, received
    /// bytes to its up and total quotas.
    pub fn budget(&self) -> Budget {
        let of = |f: fn(quota::Dir) -> bool| {
            self.quotas
                .iter()
                .filter(|q| f(q.key.2))
                .map(|q| q.pool.clone())
                .collect()
        };
        Budget {
            tx: of(|d| d != quota::Dir::Up),
            rx: of(|d| d != quota::Dir::Down),
        }
    }

    /// Does this session count against any byte quota?
    pub fn charges(&self) -> bool {
        !self.charged.is_empty()
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        {
            let mut active = self.acc.active.lock();
            for k in &self.counted {
                if let Some(n) = active.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(k);
                    }
                }
            }
        }
        if !self.quotas.is_empty() {
            let mut pools = self.acc.pools.lock();
            self.quotas.clear();
            // Pools no session holds any more: the store has their count.
            pools.retain(|_, slot| Arc::strong_count(&slot.pool) > 1);
        }
        if self.charges() {
            // At the session's end, so a restart right after keeps its count.
            self.acc.flush();
        }
    }
}

#[cfg(all(test, feature = "quotas", feature = "http"))]
mod tests {
    use super::*;
    use crate::config::SourceLimit;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tmpdir() -> std::path::PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "btest-acct-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn cfg(
        users_file: &str,
        sources: &[&str],
        dir: Option<&Path>,
    ) -> (ServerConfig, Option<std::path::PathBuf>) {
        let mut c = ServerConfig::default();
        let mut f = None;
        if !users_file.is_empty() {
            let p = tmpdir().with_extension("users");
            std::fs::write(&p, users_file).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            c.users_file = Some(p.clone());
            f = Some(p);
        }
        c.source_limits = sources
            .iter()
            .map(|s| s.parse::<SourceLimit>().unwrap())
            .collect();
        c.state_dir = dir.map(Path::to_path_buf);
        (c, f)
    }

    fn accounting(c: &ServerConfig) -> Result<Accounting> {
        Accounting::new(c, &ServerAccounts::new(c)?)
    }

    /// What the data path and the status thread do with a session's bytes: take them from
    /// the pools (engine/budget.rs), then charge the store once per take.
    fn moved(g: &Grant, sent: u64, received: u64, now: SystemTime) -> Option<String> {
        let b = g.budget();
        let _ = b.take_tx(sent);
        let _ = b.take_rx(received);
        g.charge(sent, received, now)
    }

    #[test]
    fn byte_quotas_stop_refuse_and_survive_a_restart() {
        let dir = tmpdir();
        let (c, f) = cfg(
            "alice:pw\nbob:pw\nlimit alice day=1M sessions=1 rate=5M duration=1m\n",
            &[],
            Some(&dir),
        );
        let acc = Arc::new(accounting(&c).unwrap());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let now = SystemTime::now();
        let g = acc.admit(Some("alice"), ip, now).unwrap();
        assert_eq!(g.rate, Some(5_000_000));
        assert_eq!(g.duration, Some(Duration::from_secs(60)));
        // A second concurrent session is over sessions=1; bob has no limits.
        let e = acc.admit(Some("alice"), ip, now).err().unwrap();
        assert!(e.contains("user:alice already has 1 session(s)"), "{e}");
        assert!(acc.admit(Some("bob"), ip, now).is_ok());
        assert_eq!(moved(&g, 300_000, 200_000, now), None);
        // A send that would pass the quota does not go out.
        assert!(!g.budget().take_tx(600_000));
        let why = moved(&g, 400_000, 100_000, now).unwrap();
        assert!(
            why.contains(
                "user:alice used 1.00 MB of its daily total quota of 1.00 MB; it resets at"
            ),
            "{why}"
        );
        let rows = acc.quota_rows(now);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].used, rows[0].limit, rows[0].window, rows[0].dir),
            (1_000_000, 1_000_000, "day", "total")
        );
        drop(g);
        let e = acc.admit(Some("alice"), ip, now).err().unwrap();
        assert!(e.contains("daily total quota"), "{e}");
        drop(acc);
        // Restart: the count is still there.
        let acc = Arc::new(accounting(&c).unwrap());
        assert!(acc.admit(Some("alice"), ip, now).is_err());
        // Tomorrow it is not.
        assert!(acc
            .admit(Some("alice"), ip, now + Duration::from_secs(86_400))
            .is_ok());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = f.map(std::fs::remove_file);
    }

    #[test]
    fn less_than_a_send_left_refuses_the_next_session() {
        let dir = tmpdir();
        let (c, _) = cfg("", &["addr down-day=1M"], Some(&dir));
        let acc = Arc::new(accounting(&c).unwrap());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let now = SystemTime::now();
        let g = acc.admit(None, ip, now).unwrap();
        // 40 kB left: less than one more TCP batch may need, so the quota reads as used up
        // (the status thread ends the session; the next one is refused, also after a restart).
        let why = moved(&g, 960_000, 0, now).unwrap();
        assert!(
            why.contains("used 960.00 kB of its daily down quota"),
            "{why}"
        );
        drop(g);
        let e = acc.admit(None, ip, now).err().unwrap();
        assert!(e.contains("used 960.00 kB"), "{e}");
        drop(acc);
        let acc = Arc::new(accounting(&c).unwrap());
        assert!(acc.admit(None, ip, now).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sessions_of_one_key_share_one_pool_and_it_is_freed() {
        let dir = tmpdir();
        let (c, _) = cfg("", &["v4/24 day=1M"], Some(&dir));
        let acc = Arc::new(accounting(&c).unwrap());
        let now = SystemTime::now();
        let a = acc.admit(None, "10.9.9.1".parse().unwrap(), now).unwrap();
        let b = acc.admit(None, "10.9.9.2".parse().unwrap(), now).unwrap();
        assert_eq!(acc.pools.lock().len(), 1, "one /24, one quota, one pool");
        assert!(a.budget().take_tx(700_000));
        assert!(
            !b.budget().take_tx(700_000),
            "the second session sees the first's bytes"
        );
        assert!(
            !a.budget().take_rx(1),
            "a refused send leaves the quota used up for every session"
        );
        drop(a);
        assert_eq!(acc.pools.lock().len(), 1, "b still holds it");
        drop(b);
        assert!(acc.pools.lock().is_empty(), "no session, no pool");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn source_scopes_count_hosts_and_networks() {
        let dir = tmpdir();
        let (c, _) = cfg(
            "",
            &["addr up-day=1M", "v4/24 sessions=2", "v6/48 down-week=500k"],
            Some(&dir),
        );
        let acc = Arc::new(accounting(&c).unwrap());
        let now = SystemTime::now();
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "::ffff:10.1.2.4".parse().unwrap(); // v4-mapped: the same /24
        let c2: IpAddr = "10.1.2.5".parse().unwrap();
        let g1 = acc.admit(None, a, now).unwrap();
        let g2 = acc.admit(None, b, now).unwrap();
        let e = acc.admit(None, c2, now).err().unwrap();
        assert!(e.contains("net:10.1.2.0/24 already has 2"), "{e}");
        // Upload is counted per address; a's download does not count against up-day.
        assert_eq!(moved(&g1, 10_000_000, 900_000, now), None);
        assert!(moved(&g1, 0, 100_000, now)
            .unwrap()
            .contains("addr:10.1.2.3 used 1.00 MB of its daily up quota"));
        assert_eq!(moved(&g2, 0, 50_000, now), None);
        drop((g1, g2));
        assert!(acc.admit(None, c2, now).is_ok());
        assert!(acc.admit(None, a, now).is_err());
        // IPv6: one /64 is one host; the /48 shares a weekly download quota.
        let h1: IpAddr = "2001:db8:1:1::1".parse().unwrap();
        let h2: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let g = acc.admit(None, h1, now).unwrap();
        assert!(moved(&g, 500_000, 0, now)
            .unwrap()
            .contains("net:2001:db8:1::/48 used 500.00 kB of its weekly down quota"));
        drop(g);
        let e = acc.admit(None, h2, now).err().unwrap();
        assert!(e.contains("net:2001:db8:1::/48"), "{e}");
        let keys: Vec<String> = acc.quota_rows(now).into_iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            [
                "addr:10.1.2.3",
                "addr:10.1.2.4",
                "addr:2001:db8:1:1::/64",
                "net:2001:db8:1::/48"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn configuration_errors_say_what_to_fix() {
        let (c, f) = cfg("alice:pw\nlimit alice day=1G\n", &[], None);
        let e = accounting(&c).err().unwrap().to_string();
        assert!(e.contains("need --state-dir"), "{e}");
        let (c, f2) = cfg("alice:pw\nlimit carol day=1G\n", &[], None);
        let e = accounting(&c).err().unwrap().to_string();
        assert!(e.contains(":2: limit for 'carol'"), "{e}");
        let (c, f3) = cfg("alice:pw\nlimit alice dya=1G\n", &[], None);
        let e = accounting(&c).err().unwrap().to_string();
        assert!(e.contains(":2: limit alice: unknown limit 'dya'"), "{e}");
        let (c, f4) = cfg(
            "alice:pw\nlimit alice sessions=1\nlimit alice rate=1M\n",
            &[],
            None,
        );
        let e = accounting(&c).err().unwrap().to_string();
        assert!(e.contains("second limit line"), "{e}");
        // Limits without byte quotas need no state directory.
        let (c, f5) = cfg(
            "alice:pw\nlimit alice sessions=1 rate=1M\n",
            &["addr sessions=3"],
            None,
        );
        let acc = accounting(&c).unwrap();
        assert!(!acc.is_empty());
        for p in [f, f2, f3, f4, f5].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn old_periods_are_dropped_by_compaction() {
        let t = 1_764_770_400; // 2025-12-03 14:00 UTC
        assert!(current_or_later("d2025-12-03", t));
        assert!(current_or_later("d2025-12-04", t));
        assert!(!current_or_later("d2025-12-02", t));
        assert!(current_or_later("w2025-12-01", t));
        assert!(!current_or_later("w2025-11-24", t));
        assert!(current_or_later("m2025-12", t));
        assert!(!current_or_later("m2025-11", t));
        assert!(current_or_later("x-unknown", t));
    }

    fn is_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn sh(args: &[&str]) -> bool {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A 64 KiB tmpfs on a fresh directory, unmounted (and removed) on drop.
    struct SmallFs(std::path::PathBuf);

    impl SmallFs {
        fn mount() -> Option<SmallFs> {
            let d = tmpdir();
            std::fs::create_dir_all(&d).unwrap();
            let p = d.to_str().unwrap();
            if sh(&["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", p]) {
                Some(SmallFs(d))
            } else {
                let _ = std::fs::remove_dir(&d);
                None
            }
        }

        fn remount(&self, how: &str) {
            let opt = format!("remount,{how}");
            assert!(sh(&["mount", "-o", &opt, self.0.to_str().unwrap()]));
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            sh(&["umount", "-l", self.0.to_str().unwrap()]);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ALICE: &str = "alice:pw\nlimit alice day=1G\n";

    fn used(acc: &Accounting, now: SystemTime) -> u64 {
        acc.quota_rows(now)[0].used
    }

    /// Serves alice, charging `n` bytes, with the session's end sync.
    fn session(acc: &Arc<Accounting>, n: u64, now: SystemTime) {
        let g = acc
            .admit(Some("alice"), "192.0.2.1".parse().unwrap(), now)
            .unwrap();
        assert_eq!(g.charge(n, 0, now), None);
    }

    /// A store that cannot be written at start: the server starts, counts in memory, and
    /// the first sync after `writable()` writes it all.
    fn unwritable_at_start(dir: &Path, read_only: impl Fn(), writable: impl Fn()) {
        let (c, f) = cfg(ALICE, &[], Some(dir));
        let now = SystemTime::now();
        let acc = Arc::new(accounting(&c).unwrap());
        session(&acc, 1000, now);
        drop(acc);
        read_only();
        let (_, r) = Store::open(dir).unwrap();
        assert!(
            r.write_error.is_some(),
            "the log cannot be opened to append: {r:?}"
        );
        let acc = Arc::new(accounting(&c).expect("a write error at start is not a refusal"));
        assert_eq!(used(&acc, now), 1000, "replayed");
        session(&acc, 500, now);
        assert_eq!(used(&acc, now), 1500, "counted in memory");
        writable();
        acc.flush();
        drop(acc);
        let acc = accounting(&c).unwrap();
        assert_eq!(used(&acc, now), 1500, "written by the retry");
        let _ = f.map(std::fs::remove_file);
    }

    #[test]
    fn a_read_only_store_at_start_is_a_warning() {
        if is_root() {
            // Root writes through file modes: the tmpfs test below covers this as root.
            eprintln!(
                "skipped: file modes do not stop root (see a_full_disk_at_start_is_a_warning)"
            );
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir();
        let log = dir.join(usage::FILE_NAME);
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        unwritable_at_start(
            &dir,
            || {
                mode(&log, 0o444).unwrap();
                mode(&dir, 0o555).unwrap();
            },
            || {
                mode(&dir, 0o755).unwrap();
                mode(&log, 0o644).unwrap();
            },
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_at_start_is_a_warning() {
        if !is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root (a_read_only_store_at_start_is_a_warning runs instead)");
            return;
        }
        let Some(fs) = SmallFs::mount() else {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        };
        let dir = fs.0.join("state");
        // Read-only file system at start: the log cannot even be opened for appending.
        unwritable_at_start(&dir, || fs.remount("ro"), || fs.remount("rw"));
        // Full: start-up compaction cannot write its new file.
        let filler = fs.0.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
        }
        let (store, _) = Store::open(&dir).unwrap();
        let e = store.compact(|_| true, 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        drop(store);
        let (c, f) = cfg(ALICE, &[], Some(&dir));
        let now = SystemTime::now();
        let acc = Arc::new(accounting(&c).expect("a full disk at start is not a refusal"));
        assert_eq!(used(&acc, now), 1500);
        session(&acc, 1, now);
        assert_eq!(used(&acc, now), 1501);
        std::fs::remove_file(&filler).unwrap();
        acc.flush();
        drop(acc);
        assert_eq!(used(&accounting(&c).unwrap(), now), 1501);
        let _ = f.map(std::fs::remove_file);
    }

    #[test]
    fn a_store_of_garbage_is_set_aside_not_refused() {
        let dir = tmpdir();
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = b"this is not a usage log\n";
        std::fs::write(dir.join(usage::FILE_NAME), garbage).unwrap();
        let (c, f) = cfg(ALICE, &[], Some(&dir));
        let acc = accounting(&c).expect("a public server keeps serving");
        assert_eq!(used(&acc, SystemTime::now()), 0);
        let side: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.starts_with(usage::REJECTED_PREFIX).then_some(name)
            })
            .collect();
        assert_eq!(side.len(), 1, "{side:?}");
        assert_eq!(std::fs::read(dir.join(&side[0])).unwrap(), garbage);
        assert_eq!(std::fs::read(dir.join(usage::FILE_NAME)).unwrap(), b"");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = f.map(std::fs::remove_file);
    }
}
