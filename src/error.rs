//! The crate's one error type, with the phase it happened in and text that says what to try.
//!
//! Must not: print anything. `main` prints `btest: <error>` once and maps [`Error::exit_code`].

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Where in a test an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Binding a listener or socket.
    Bind,
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the server's `01 00 00 00`.
    Hello,
    /// Sending or reading the 16-byte command and its reply.
    Command,
    /// MD5 or EC-SRP5 exchange.
    Auth,
    /// Opening or accepting the extra TCP connections.
    Join,
    /// Negotiating the UDP port pair.
    UdpSetup,
    /// Moving test data.
    Data,
    /// Exchanging status messages.
    Status,
}

impl Phase {
    /// The phase's name, as in messages and the `phase` field of records.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Bind => "bind",
            Phase::Connect => "connect",
            Phase::Hello => "hello",
            Phase::Command => "command",
            Phase::Auth => "authentication",
            Phase::Join => "extra connections",
            Phase::UdpSetup => "UDP setup",
            Phase::Data => "data",
            Phase::Status => "status",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The display name of an auth method word (`md5` -> `MD5`).
pub fn auth_method_name(method: &str) -> &str {
    match method {
        "md5" => "MD5",
        "ecsrp5" => "EC-SRP5",
        m => m,
    }
}

/// Every failure the library reports.
#[derive(Debug)]
pub enum Error {
    /// Bad command-line input; the message keeps the user's text.
    Usage(String),
    /// An I/O failure.
    Io {
        /// Phase.
        phase: Phase,
        /// Peer or local address involved, when known.
        addr: Option<SocketAddr>,
        /// The OS error.
        source: io::Error,
    },
    /// A read deadline passed.
    Timeout {
        /// Phase.
        phase: Phase,
        /// Peer.
        addr: Option<SocketAddr>,
        /// How long we waited.
        secs: f64,
    },
    /// The peer sent something that is not btest.
    Protocol {
        /// Phase.
        phase: Phase,
        /// Peer.
        addr: Option<SocketAddr>,
        /// What was wrong.
        detail: String,
    },
    /// The peer closed the connection before the test could start.
    PeerClosed {
        /// Phase.
        phase: Phase,
        /// Peer.
        addr: Option<SocketAddr>,
    },
    /// The server asked for authentication and it failed or could not be done.
    Auth {
        /// `md5` or `ecsrp5`.
        method: &'static str,
        /// What happened and what to check.
        detail: String,
    },
    /// The server's name could not be resolved.
    Resolve {
        /// The name as given.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The server refused the test (limits, unsupported mode).
    Refused(String),
    /// The test ran but ended before its duration, for the reason given.
    EndedEarly(String),
    /// A run of many tests finished and some failed (`btest fleet`); each failure was
    /// reported with its target.
    SomeFailed(String),
    /// The test ran, but no data arrived in a direction it asked for.
    NoData {
        /// `receive` (nothing reached us) or `transmit` (nothing reached the server).
        direction: &'static str,
        /// What was seen and what to check.
        detail: String,
    },
    /// A role thread panicked.
    Internal {
        /// Thread name.
        thread: String,
    },
}

impl Error {
    /// An I/O error in a phase; read timeouts become [`Error::Timeout`] and EOF
    /// [`Error::PeerClosed`].
    pub fn io(phase: Phase, addr: Option<SocketAddr>, source: io::Error) -> Error {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                phase,
                addr,
                secs: 0.0,
            },
            io::ErrorKind::UnexpectedEof => Error::PeerClosed { phase, addr },
            _ => Error::Io {
                phase,
                addr,
                source,
            },
        }
    }

    /// The phase the error happened in, when it has one.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Error::Io { phase, .. }
            | Error::Timeout { phase, .. }
            | Error::Protocol { phase, .. }
            | Error::PeerClosed { phase, .. } => Some(*phase),
            Error::Auth { .. } => Some(Phase::Auth),
            Error::Resolve { .. } => Some(Phase::Connect),
            Error::NoData { .. } | Error::EndedEarly(_) => Some(Phase::Data),
            Error::Usage(_) | Error::Refused(_) | Error::Internal { .. } | Error::SomeFailed(_) => {
                None
            }
        }
    }

    /// Process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn at(addr: &Option<SocketAddr>) -> String {
    addr.map(|a| format!(" with {a}")).unwrap_or_default()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Io {
                phase: Phase::Connect,
                addr,
                source,
            } => write!(
                f,
                "cannot connect{}: {source}; check that a bandwidth-server runs there \
                 (RouterOS: /tool bandwidth-server set enabled=yes) and that TCP port {} is reachable",
                at(addr),
                // the port the user asked for, not the default (a CLI error keeps the input)
                addr.map_or(2000, |a| a.port())
            ),
            // EADDRNOTAVAIL: no interface has the address (a `--bind` or `--listen` typo, or
            // an address not up yet). Issue 19: it used to ask about another program.
            Error::Io {
                phase: Phase::Bind,
                addr,
                source,
            } if source.kind() == io::ErrorKind::AddrNotAvailable => write!(
                f,
                "cannot bind{}: this host has no address {} ({source}); check `ip address` \
                 for the addresses it has",
                addr.map(|a| format!(" {a}")).unwrap_or_default(),
                addr.map_or_else(|| "like that".to_string(), |a| a.ip().to_string())
            ),
            Error::Io {
                phase: Phase::Bind,
                addr,
                source,
            } => write!(
                f,
                "cannot bind{}: {source}; is another program using that port?",
                addr.map(|a| format!(" {a}")).unwrap_or_default()
            ),
            Error::Io {
                phase,
                addr,
                source,
            } => write!(f, "{phase} phase failed{}: {source}", at(addr)),
            Error::Timeout {
                phase: Phase::Auth,
                addr,
                secs,
            } => {
                write!(f, "timed out in the authentication phase{}", at(addr))?;
                if *secs > 0.0 {
                    write!(f, " after {secs:.1} s")?;
                }
                // Both sides: the server's handshake deadline passed, or our own wait
                // (docs/protocol.md 14.10). Not a wrong password: a retry may pass.
                write!(
                    f,
                    "; the login did not finish before a handshake deadline (a btest server's \
                     --handshake-timeout, 5 s by default, or our --connect-timeout): a loaded \
                     server or client (EC-SRP5 is slow on small routers) or a slow path; not a \
                     wrong password, try again"
                )
            }
            Error::Timeout { phase, addr, secs } => {
                write!(f, "timed out in the {phase} phase{}", at(addr))?;
                if *secs > 0.0 {
                    write!(f, " after {secs:.1} s")?;
                }
                write!(
                    f,
                    "; the peer stopped answering (is it a btest server, and is the path open?)"
                )
            }
            Error::Protocol {
                phase,
                addr,
                detail,
            } => write!(
                f,
                "protocol error in the {phase} phase{}: {detail}; is the peer a MikroTik bandwidth-test server?",
                at(addr)
            ),
            Error::PeerClosed { phase, addr } => write!(
                f,
                "the peer closed the connection in the {phase} phase{}; it may have refused the test \
                 (session limit, authentication, or unsupported mode)",
                at(addr)
            ),
            Error::Auth { method, detail } => {
                write!(
                    f,
                    "authentication failed ({}): {detail}",
                    auth_method_name(method)
                )
            }
            Error::Resolve { host, source } => write!(
                f,
                "cannot resolve the server name '{host}': {source}; check the spelling and \
                 this host's DNS, or give an IP address"
            ),
            Error::Refused(m) => write!(f, "test refused: {m}"),
            Error::EndedEarly(m) => write!(f, "test ended early: {m}"),
            Error::SomeFailed(m) => write!(f, "{m}"),
            Error::NoData { direction, detail } => write!(
                f,
                "the test failed in the data phase: no data in the {direction} direction for \
                 the whole test; {detail}"
            ),
            Error::Internal { thread } => write!(
                f,
                "internal error: thread {thread} panicked; please report this with the command line"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Resolve { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Crate result alias.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_names_the_port_asked_for() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = Error::io(
            Phase::Connect,
            Some("192.0.2.1:27100".parse().unwrap()),
            refused(),
        );
        assert!(e.to_string().contains("TCP port 27100 is reachable"), "{e}");
        let e = Error::io(Phase::Connect, None, refused());
        assert!(e.to_string().contains("TCP port 2000 is reachable"), "{e}");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Refused("x".into()).exit_code(), 1);
        // issue 19: an address this host does not have is not a busy port
        let e = Error::io(
            Phase::Bind,
            Some("192.0.2.7:0".parse().unwrap()),
            io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        );
        let t = e.to_string();
        assert!(
            t.starts_with("cannot bind 192.0.2.7:0: this host has no address 192.0.2.7 ("),
            "{t}"
        );
        assert!(!t.contains("another program"), "{t}");
    }

    #[test]
    fn io_kinds_map_to_variants() {
        let e = Error::io(
            Phase::Hello,
            None,
            io::Error::from(io::ErrorKind::WouldBlock),
        );
        assert!(matches!(
            e,
            Error::Timeout {
                phase: Phase::Hello,
                ..
            }
        ));
        let e = Error::io(
            Phase::Command,
            None,
            io::Error::from(io::ErrorKind::UnexpectedEof),
        );
        assert!(matches!(
            e,
            Error::PeerClosed {
                phase: Phase::Command,
                ..
            }
        ));
    }

    #[test]
    fn auth_message_names_method() {
        let e = Error::Auth {
            method: "ecsrp5",
            detail: "check the user and password".into(),
        };
        assert_eq!(
            e.to_string(),
            "authentication failed (EC-SRP5): check the user and password"
        );
    }
}
