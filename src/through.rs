//! `btest through` (issue 11): our server and our client in one process, each on its own side
//! of the device under test, so a host with two ports (or two namespaces, or two VRFs) tests
//! the router, bridge or radio link between them.
//!
//! Why it works in one process: a socket lives in the network namespace of the thread that
//! made it, and a thread's children start in its namespace. So the server is bound and spawned
//! from a thread (`btest-through-srv`) that entered the server side's namespace, and the test
//! runs on a thread (`btest-through-cli`) that entered the client side's; every socket and
//! thread each one makes stays on its side. Interface binding is SO_BINDTODEVICE (net.rs).
//!
//! Must not: print (the reporter does), or leave the server running: it is shut down on every
//! way out.

use std::path::Path;
use std::time::Duration;

use crate::config::ThroughConfig;
use crate::engine::Stop;
use crate::error::{Error, Phase, Result};
use crate::report::ClientReporter;
use crate::run::{self, TestRun};
use crate::server::{Server, ServerHandle};

fn enter(side: &str, ns: Option<&Path>) -> Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    crate::sys::enter_netns(ns).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) => " (no such namespace: see `ip netns list`)",
            Some(libc::EPERM) => " (entering a namespace needs root or CAP_SYS_ADMIN)",
            _ if e.kind() == std::io::ErrorKind::Unsupported => {
                " (network namespaces are Linux-only: run the two sides as two processes)"
            }
            _ => "",
        };
        Error::Usage(format!(
            "--{side}-netns {}: cannot enter the namespace: {e}{hint}",
            ns.display()
        ))
    })
}

/// Binds and starts the server side, inside its namespace.
fn start_server(cfg: &ThroughConfig) -> Result<ServerHandle> {
    let scfg = cfg.server.clone();
    let ns = cfg.server_netns.clone();
    let t = crate::thread::spawn_named(
        "btest-through-srv",
        None,
        move || -> Result<ServerHandle> {
            enter("server", ns.as_deref())?;
            Server::bind(scfg)?.spawn()
        },
    )
    .map_err(|e| Error::io(Phase::Bind, None, e))?;
    t.join().map_err(|_| Error::Internal {
        thread: "btest-through-srv".into(),
    })?
}

/// Runs the test through the device. `Err` for a side that cannot be set up (a namespace, an
/// address or an interface that is not there); the test's own verdict is in the
/// [`TestRun`].
pub fn run(
    cfg: &ThroughConfig,
    stop: &Stop,
    mut rep: ClientReporter<crate::run::Out>,
) -> Result<TestRun> {
    let server = start_server(cfg).map_err(|e| match e {
        Error::Io {
            phase: Phase::Bind,
            addr,
            source,
        } => Error::Usage(format!(
            "through: the server side cannot listen on {}: {source}; is --server-addr an \
             address of the server side{}?",
            addr.map_or_else(|| "its address".into(), |a| a.to_string()),
            if cfg.server_netns.is_some() {
                " (inside --server-netns)"
            } else {
                ""
            }
        )),
        other => other,
    })?;
    for a in server.addrs() {
        log::info!("through: server side listening on {a}");
    }
    let mut ccfg = cfg.client.clone();
    if ccfg.port == 0 {
        ccfg.port = server.addrs().first().map_or(0, |a| a.port());
    }
    let ns = cfg.client_netns.clone();
    let stop2 = stop.clone();
    // A plain thread that owns what it uses (not a scoped one: that would be one more
    // generic copy of std's scope in the 1 MiB router image).
    let out = crate::thread::spawn_named("btest-through-cli", None, move || -> Result<TestRun> {
        enter("client", ns.as_deref())?;
        run::run(&ccfg, &stop2, &mut rep).map_err(|e| Error::io(Phase::Data, None, e))
    })
    .map_err(|e| Error::io(Phase::Connect, None, e))
    .and_then(|h| {
        h.join().map_err(|_| Error::Internal {
            thread: "btest-through-cli".into(),
        })?
    });
    // The server side's view, for the log: what it received and sent.
    for ev in server.events().try_iter() {
        log::info!(
            "through: server side: {}",
            crate::report::server_record(&ev).key_values()
        );
    }
    let stats = server.shutdown(Duration::from_secs(1));
    log::debug!(
        "through: server side served {} session(s)",
        stats.sessions_started
    );
    out
}
