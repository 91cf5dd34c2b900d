//! The I/O half of authentication, for both roles: reads and writes the MD5 and EC-SRP5
//! messages on connection 0 and calls the pure code in `auth/`.
//!
//! Owns: the server's account table (loaded once at start-up, EC-SRP5 verifiers computed
//! then), the users file format, and the client's credential handling. Must not: implement
//! cryptography, log passwords, or answer differently (in content or timing) for an unknown
//! user than for a wrong password.

use std::net::{SocketAddr, TcpStream};

use crate::auth::{ec_srp5, md5, AuthMethod};
#[cfg(feature = "client")]
use crate::config::ClientConfig;
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::Reply;
#[cfg(feature = "server")]
use {crate::config::ServerConfig, std::collections::HashMap, std::path::Path};

#[cfg(feature = "client")]
const RECHECK: &str = "check the user and password";

fn auth_err(method: AuthMethod, detail: impl Into<String>) -> Error {
    Error::Auth {
        method: method.as_str(),
        detail: detail.into(),
    }
}

/// How soon after our last login message a close still counts as the server's answer to it.
/// A server judges a login the moment the message arrives: one curve verification (3.8 ms
/// of server CPU per exchange, docs/reliability.md "Login abuse") plus a round trip. A server
/// that gives up instead shuts the connection at its handshake deadline, counted from its
/// accept (`--handshake-timeout`, 5 s by default; RouterOS' is not documented). Issue 18: such a close used to read as "wrong
/// user or password" and fleet did not retry it. docs/protocol.md 14.10 has the rule.
#[cfg(feature = "client")]
const PROMPT: std::time::Duration = std::time::Duration::from_secs(1);

/// Maps a failure while talking during authentication into what it says about the login.
/// `sent` is when we sent the message whose answer we were waiting for (or when a wait for
/// the server began). A close (or reset) [`PROMPT`] or more after it is the server's
/// handshake deadline, not a verdict: a timeout, which a retry may pass. A prompt close is
/// how EC-SRP5 says "no": an authentication error that still says what happened.
#[cfg(feature = "client")]
fn during(method: AuthMethod, e: Error, sent: std::time::Instant) -> Error {
    let waited = sent.elapsed();
    let closed = match &e {
        Error::PeerClosed { addr, .. } => Some(*addr),
        Error::Io { addr, source, .. } if is_reset(source) => Some(*addr),
        _ => None,
    };
    match closed {
        Some(addr) if waited >= PROMPT => Error::Timeout {
            phase: Phase::Auth,
            addr,
            secs: waited.as_secs_f64(),
        },
        Some(_) if matches!(e, Error::PeerClosed { .. }) => auth_err(
            method,
            match method {
                AuthMethod::EcSrp5 => {
                    "the server closed the connection during the exchange: check the user and \
                     password; RouterOS 6.43+ servers use EC-SRP5"
                }
                _ => "the server closed the connection: check the user and password",
            },
        ),
        _ => e,
    }
}

#[cfg(feature = "client")]
fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Has the server already closed (or reset) the connection? A non-blocking peek, so it
/// never waits. Used before MSG3: a slow client (EC-SRP5 on a small router) may find the
/// server gone at its deadline, and the MSG3 write would still succeed.
#[cfg(feature = "client")]
fn closed_already(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let r = s.peek(&mut [0u8; 1]);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => true,
        Err(e) => is_reset(&e),
        Ok(_) => false,
    }
}

#[cfg(feature = "client")]
fn creds(cfg: &ClientConfig, method: AuthMethod) -> Result<(&[u8], &[u8])> {
    match (&cfg.user, &cfg.password) {
        (Some(u), Some(p)) => Ok((u.as_bytes(), p.as_bytes())),
        _ => Err(auth_err(
            method,
            "the server requires a login: give --user and --password (or set BTEST_PASSWORD)",
        )),
    }
}

#[cfg(feature = "client")]
fn read_final(s: &mut TcpStream, method: AuthMethod, sent: std::time::Instant) -> Result<Reply> {
    let b = net::read_msg::<4>(s, Phase::Auth).map_err(|e| during(method, e, sent))?;
    match Reply::parse(&b) {
        Ok(r @ (Reply::Ok | Reply::OkToken(_))) => Ok(r),
        Ok(Reply::Failed) => Err(auth_err(
            method,
            match method {
                AuthMethod::Md5 => "the server rejected the login: check the user and password",
                _ => {
                    "the server rejected the login: check the user and password; RouterOS \
                      6.43+ servers use EC-SRP5"
                }
            },
        )),
        Ok(other) => Err(Error::Protocol {
            phase: Phase::Auth,
            addr: s.peer_addr().ok(),
            detail: format!("unexpected reply {other:?} after authentication"),
        }),
        Err(e) => Err(Error::Protocol {
            phase: Phase::Auth,
            addr: s.peer_addr().ok(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(feature = "client")]
/// Client side of the MD5 challenge (after `02 00 00 00`); returns the final OK.
pub fn client_md5(s: &mut TcpStream, cfg: &ClientConfig, _server: SocketAddr) -> Result<Reply> {
    let m = AuthMethod::Md5;
    let (user, pw) = creds(cfg, m)?;
    if user.len() > md5::USER_FIELD_LEN {
        log::warn!(
            "user name longer than {} bytes: MD5 carries only the first {}",
            md5::USER_FIELD_LEN,
            md5::USER_FIELD_LEN
        );
    }
    let asked = std::time::Instant::now();
    let challenge =
        net::read_msg::<{ md5::CHALLENGE_LEN }>(s, Phase::Auth).map_err(|e| during(m, e, asked))?;
    let sent = std::time::Instant::now();
    net::write_msg(s, &md5::client_reply(user, pw, &challenge), Phase::Auth)
        .map_err(|e| during(m, e, sent))?;
    read_final(s, m, sent)
}

/// Reads one EC-SRP5 frame. I/O failures come back as they are (closed, timeout, reset):
/// the server reports them as such (a guard-cut login is a timeout, handshake.rs), the client
/// reads them through [`during`].
fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>> {
    let len = net::read_msg::<1>(s, Phase::Auth)?[0];
    let mut v = vec![0u8; usize::from(len)];
    net::read_exact(s, &mut v, Phase::Auth)?;
    Ok(v)
}

fn write_frame(s: &mut TcpStream, payload: &[u8], m: AuthMethod) -> Result<()> {
    let f = ec_srp5::frame(payload).map_err(|e| auth_err(m, e.to_string()))?;
    net::write_msg(s, &f, Phase::Auth)
}

#[cfg(feature = "client")]
/// Client side of EC-SRP5 (after `03 00 00 00`); returns the final OK.
pub fn client_ecsrp5(s: &mut TcpStream, cfg: &ClientConfig, _server: SocketAddr) -> Result<Reply> {
    let m = AuthMethod::EcSrp5;
    let (user, pw) = creds(cfg, m)?;
    if user.len() > ec_srp5::MAX_USER_LEN {
        return Err(Error::Usage(format!(
            "--user: EC-SRP5 allows at most {} bytes of user name",
            ec_srp5::MAX_USER_LEN
        )));
    }
    let mut s_a = [0u8; 32];
    crate::sys::random_bytes(&mut s_a);
    let (mut hs, msg1) = ec_srp5::ClientHandshake::new(user, pw, s_a);
    s_a.fill(0);
    let sent1 = std::time::Instant::now();
    write_frame(s, &msg1, m).map_err(|e| during(m, e, sent1))?;
    let msg2 = read_frame(s).map_err(|e| during(m, e, sent1))?;
    let msg3 = hs
        .on_msg2(&msg2)
        .map_err(|e| auth_err(m, format!("bad server message: {e}")))?;
    // The server cannot judge the password before MSG3: a close already there was its
    // deadline passing while we computed (or a refusal of MSG1, when it came at once).
    if closed_already(s) {
        return Err(during(
            m,
            Error::PeerClosed {
                phase: Phase::Auth,
                addr: s.peer_addr().ok(),
            },
            sent1,
        ));
    }
    let sent3 = std::time::Instant::now();
    write_frame(s, &msg3, m).map_err(|e| during(m, e, sent3))?;
    let msg4 = read_frame(s).map_err(|e| during(m, e, sent3))?;
    hs.on_msg4(&msg4).map_err(|e| {
        auth_err(
            m,
            format!("{e}: {RECHECK}; RouterOS 6.43+ servers use EC-SRP5"),
        )
    })?;
    read_final(s, m, sent3)
}

#[cfg(feature = "server")]
struct Account {
    password: Vec<u8>,
    verifier: Option<ec_srp5::Verifier>,
}

#[cfg(feature = "server")]
/// The server's accounts and offered method.
pub struct ServerAccounts {
    method: AuthMethod,
    users: HashMap<Vec<u8>, Account>,
    /// Stands in for unknown users so their handshake costs what a real one costs.
    dummy: Option<ec_srp5::Verifier>,
    salt_key: [u8; 32],
    /// The users file's `limit` lines, kept for the accounting (read with the accounts).
    limits: Vec<(usize, String, String)>,
}

#[cfg(feature = "server")]
/// Parses a users file: one `user:password` per line, `#` comments and blank lines ignored.
/// The password is everything after the first colon (it may contain colons). `limit USER
/// SPEC` lines (see [`limit_line`]) are not accounts and are skipped here.
pub fn parse_users(text: &str, origin: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if limit_line(line).is_some() {
            continue;
        }
        let bad = |why: &str| {
            Error::Usage(format!(
                "{origin}:{}: {why} (expected user:password)",
                i + 1
            ))
        };
        let (u, p) = line
            .split_once(':')
            .ok_or_else(|| bad("no ':' in the line"))?;
        let u = u.trim();
        if u.is_empty() {
            return Err(bad("empty user name"));
        }
        if u.len() > 255 {
            return Err(bad("user name longer than 255 bytes"));
        }
        out.push((u.to_string(), p.to_string()));
    }
    Ok(out)
}

/// A `limit USER SPEC` line of a users file: the user and the limits spec
/// (`limit alice day=10G sessions=2 rate=100M`, docs/btest.1). Such a line has no `:`, so no
/// file that was valid before reads differently: a line without `:` used to be an error.
pub fn limit_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("limit")?;
    if !rest.starts_with([' ', '\t']) || rest.contains(':') {
        return None;
    }
    let rest = rest.trim_start();
    let (user, spec) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    Some((user, spec.trim()))
}

/// Every `limit` line of a users file: (line number, user, spec).
pub fn parse_user_limits(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .filter_map(|(i, l)| limit_line(l).map(|(u, s)| (i + 1, u.to_string(), s.to_string())))
        .collect()
}

#[cfg(feature = "server")]
/// The accounts and the `limit` lines of a users file, read once.
type UsersFile = (Vec<(String, String)>, Vec<(usize, String, String)>);

#[cfg(feature = "server")]
fn load_users_file(path: &Path) -> Result<UsersFile> {
    use std::os::unix::fs::PermissionsExt;
    let origin = path.display().to_string();
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Usage(format!("--users {origin}: {e}")))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(Error::Usage(format!(
            "--users {origin}: the file is world-readable and holds passwords; refusing it \
             (run: chmod 600 {origin})"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("--users {origin}: {e}")))?;
    Ok((parse_users(&text, &origin)?, parse_user_limits(&text)))
}

#[cfg(feature = "server")]
impl ServerAccounts {
    /// Loads the accounts of the configuration and, for EC-SRP5, computes each verifier from
    /// a fresh random salt.
    pub fn new(cfg: &ServerConfig) -> Result<Self> {
        let mut list = cfg.users.clone();
        let mut limits = Vec::new();
        if let Some(p) = &cfg.users_file {
            let (accounts, l) = load_users_file(p)?;
            list.extend(accounts);
            limits = l;
        }
        if cfg.auth != AuthMethod::None && list.is_empty() {
            return Err(Error::Usage(format!(
                "--auth {}: no accounts (the users file is empty?)",
                cfg.auth
            )));
        }
        let ec = cfg.auth == AuthMethod::EcSrp5;
        let mut users = HashMap::new();
        for (u, p) in list {
            let verifier = ec.then(|| {
                let mut salt = [0u8; ec_srp5::SALT_LEN];
                crate::sys::random_bytes(&mut salt);
                ec_srp5::Verifier::new(u.as_bytes(), p.as_bytes(), salt)
            });
            if users
                .insert(
                    u.clone().into_bytes(),
                    Account {
                        password: p.into_bytes(),
                        verifier,
                    },
                )
                .is_some()
            {
                log::warn!("user '{u}' is defined more than once; the last definition wins");
            }
        }
        let mut salt_key = [0u8; 32];
        crate::sys::random_bytes(&mut salt_key);
        let dummy = ec.then(|| {
            let mut pw = [0u8; 32];
            crate::sys::random_bytes(&mut pw);
            ec_srp5::Verifier::new(b"\0unknown", &pw, [0; ec_srp5::SALT_LEN])
        });
        Ok(ServerAccounts {
            method: cfg.auth,
            users,
            dummy,
            salt_key,
            limits,
        })
    }

    /// Is there an account of this name?
    pub fn has_user(&self, name: &str) -> bool {
        self.users.contains_key(name.as_bytes())
    }

    /// The users file's `limit` lines: (line number, user, spec), for accounting.rs.
    pub fn limit_lines(&self) -> &[(usize, String, String)] {
        &self.limits
    }

    /// The method offered.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// Runs the offered method on connection 0; returns the user name on success. On failure
    /// MD5 has sent `00 00 00 00`; EC-SRP5 sends nothing more (no MSG4) and the caller closes.
    /// `presented` receives the user name the client gave as soon as it is read, so failures
    /// can be reported with it.
    pub fn authenticate(
        &self,
        s: &mut TcpStream,
        peer: SocketAddr,
        presented: &mut Option<String>,
    ) -> Result<Option<String>> {
        match self.method {
            AuthMethod::None => Ok(None),
            AuthMethod::Md5 => self.server_md5(s, peer, presented).map(Some),
            AuthMethod::EcSrp5 => self.server_ecsrp5(s, peer, presented).map(Some),
        }
    }

    // Failures are logged at debug level here: the server logs each through its rate gate
    // (one line per failure would let a login flood fill the log, issue 12).
    fn server_md5(
        &self,
        s: &mut TcpStream,
        peer: SocketAddr,
        presented: &mut Option<String>,
    ) -> Result<String> {
        let m = AuthMethod::Md5;
        let mut challenge = [0u8; md5::CHALLENGE_LEN];
        crate::sys::random_bytes(&mut challenge);
        let mut msg = Reply::NeedMd5.to_bytes().to_vec();
        msg.extend_from_slice(&challenge);
        net::write_msg(s, &msg, Phase::Auth)?;
        let reply = net::read_msg::<{ md5::REPLY_LEN }>(s, Phase::Auth)?;
        let user = md5::reply_user(&reply);
        let name = String::from_utf8_lossy(user).into_owned();
        *presented = Some(name.clone());
        let pw = self.users.get(user).map(|a| a.password.as_slice());
        if md5::verify(&reply, pw, &challenge) {
            log::info!("{peer}: authenticated user '{name}' (MD5)");
            return Ok(name);
        }
        log::debug!("{peer}: authentication failed (MD5) for user '{name}'");
        let _ = net::write_msg(s, &Reply::Failed.to_bytes(), Phase::Auth);
        Err(auth_err(
            m,
            format!("user '{name}' from {peer}: wrong user or password"),
        ))
    }

    fn server_ecsrp5(
        &self,
        s: &mut TcpStream,
        peer: SocketAddr,
        presented: &mut Option<String>,
    ) -> Result<String> {
        let m = AuthMethod::EcSrp5;
        net::write_msg(s, &Reply::NeedEcSrp5.to_bytes(), Phase::Auth)?;
        let msg1 = read_frame(s)?;
        let parsed = ec_srp5::parse_msg1(&msg1).map_err(|e| {
            log::debug!("{peer}: authentication failed (EC-SRP5): bad MSG1: {e}");
            auth_err(m, format!("from {peer}: bad MSG1: {e}"))
        })?;
        let name = String::from_utf8_lossy(parsed.user).into_owned();
        *presented = Some(name.clone());
        let fallback;
        let verifier = match self
            .users
            .get(parsed.user)
            .and_then(|a| a.verifier.as_ref())
        {
            Some(v) => v,
            None => {
                // Unknown user: the same work with a stand-in, and a salt stable per name.
                let dummy = self
                    .dummy
                    .as_ref()
                    .ok_or_else(|| auth_err(m, "no verifier"))?;
                fallback = dummy.with_salt(ec_srp5::unknown_user_salt(&self.salt_key, parsed.user));
                &fallback
            }
        };
        let mut s_b = [0u8; 32];
        crate::sys::random_bytes(&mut s_b);
        let r = ec_srp5::ServerHandshake::new(verifier, &parsed, s_b);
        s_b.fill(0);
        let (hs, msg2) = r.map_err(|e| {
            log::debug!("{peer}: authentication failed (EC-SRP5) for user '{name}': {e}");
            auth_err(m, format!("user '{name}' from {peer}: {e}"))
        })?;
        write_frame(s, &msg2, m)?;
        let msg3 = read_frame(s)?;
        match hs.on_msg3(&msg3) {
            Ok(msg4) => {
                write_frame(s, &msg4, m)?;
                log::info!("{peer}: authenticated user '{name}' (EC-SRP5)");
                Ok(name)
            }
            Err(e) => {
                log::debug!("{peer}: authentication failed (EC-SRP5) for user '{name}': {e}");
                Err(auth_err(
                    m,
                    format!("user '{name}' from {peer}: wrong user or password"),
                ))
            }
        }
    }
}

#[cfg(all(test, feature = "client"))]
mod client_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_close_is_a_verdict_only_when_prompt() {
        let closed = || Error::PeerClosed {
            phase: Phase::Auth,
            addr: None,
        };
        let m = AuthMethod::EcSrp5;
        assert!(matches!(
            during(m, closed(), Instant::now()),
            Error::Auth { .. }
        ));
        let long_ago = Instant::now() - PROMPT - Duration::from_millis(10);
        match during(m, closed(), long_ago) {
            Error::Timeout { phase, secs, .. } => {
                assert_eq!(phase, Phase::Auth);
                assert!(secs >= PROMPT.as_secs_f64());
            }
            other => panic!("{other:?}"),
        }
        let reset = || {
            Error::io(
                Phase::Auth,
                None,
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )
        };
        assert!(matches!(
            during(m, reset(), long_ago),
            Error::Timeout { .. }
        ));
        assert!(matches!(
            during(m, reset(), Instant::now()),
            Error::Io { .. }
        ));
        // our own read timeout stays a timeout
        let t = Error::Timeout {
            phase: Phase::Auth,
            addr: None,
            secs: 10.0,
        };
        assert!(matches!(
            during(m, t, Instant::now()),
            Error::Timeout { .. }
        ));
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn users_file_format() {
        let t = "# accounts\n\nalice:pw1\n  bob : p:w:2\r\ncarol:\n";
        let u = parse_users(t, "f").unwrap();
        assert_eq!(
            u,
            vec![
                ("alice".into(), "pw1".into()),
                ("bob".into(), " p:w:2".into()),
                ("carol".into(), "".into())
            ]
        );
        let e = parse_users("ok:1\nnocolon\n", "users.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("users.txt:2"), "{e}");
        let e = parse_users(":pw\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:1") && e.contains("empty user"), "{e}");
    }

    #[test]
    fn limit_lines_are_not_accounts() {
        let t = "alice:pw\nlimit alice day=10G sessions=2\n# limit bob day=1\nlimit\tbob\tmonth=1T\nlimiter:pw\nlimit carol\n";
        let u = parse_users(t, "f").unwrap();
        assert_eq!(
            u,
            vec![
                ("alice".into(), "pw".into()),
                ("limiter".into(), "pw".into())
            ]
        );
        assert_eq!(
            parse_user_limits(t),
            vec![
                (2, "alice".into(), "day=10G sessions=2".into()),
                (4, "bob".into(), "month=1T".into()),
                (6, "carol".into(), "".into()),
            ]
        );
        // with a ':' it is an account called "limit x", as it always was
        assert_eq!(limit_line("limit x:pw"), None);
        assert_eq!(limit_line("limitless day=1"), None);
    }

    #[test]
    fn users_file_must_not_be_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("btest-users-{}", std::process::id()));
        std::fs::write(&path, "alice:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = ServerConfig {
            auth: AuthMethod::Md5,
            users_file: Some(path.clone()),
            ..ServerConfig::default()
        };
        let e = ServerAccounts::new(&cfg)
            .err()
            .expect("a world-readable file is refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(e.exit_code(), 2);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a = ServerAccounts::new(&cfg).expect("mode 600 is accepted");
        assert_eq!(a.method(), AuthMethod::Md5);
        assert!(a.users.contains_key(b"alice".as_slice()));
        let _ = std::fs::remove_file(&path);
    }
}
