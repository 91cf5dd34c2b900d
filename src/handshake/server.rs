//! The server's handshake machine (diagram in the parent module): hello, the command or a
//! join marker, the login the accounts require, the admission, the OK and the UDP port.
//!
//! The decisions that need server state (the accounts, the per-source limits, quotas, the
//! session's token and UDP port) come through [`Policy`], so the machine stays pure.
//! Must not: do I/O, read clocks or log (see the parent module); the driver is
//! server/handshake.rs.

use super::{Inbox, Outbox, Step};
use crate::auth::{ec_srp5, md5, AuthMethod};
use crate::error::Phase;
use crate::wire::{self, command, Command, Protocol, Reply, Request, WireError};

/// What the machine asks the server.
pub trait Policy {
    /// The login this server requires.
    fn method(&self) -> AuthMethod;
    /// May this client start a login now? Asked before any of the login's work (an EC-SRP5
    /// MSG1 costs the server ~10x what it costs the sender, issue 12).
    fn begin_login(&mut self) -> bool;
    /// MD5: does `reply` answer `challenge` for the user it names (the same work for an
    /// unknown name)?
    fn md5_check(&self, reply: &[u8; md5::REPLY_LEN], challenge: &[u8; md5::CHALLENGE_LEN])
        -> bool;
    /// EC-SRP5: the verifier of `user` (a stand-in for an unknown name, made the same way).
    fn ec_verifier(&self, user: &[u8]) -> ec_srp5::Verifier;
    /// Admits the session of `cmd` for `user` (after its login): `None` refuses it, else the
    /// session token for a multi-connection TCP test (`Some(None)`: no token).
    fn admit(&mut self, cmd: &Command, user: Option<&[u8]>) -> Option<Option<command::Token>>;
    /// The UDP port of the admitted UDP session; `None` refuses it.
    fn udp_port(&mut self, cmd: &Command) -> Option<u16>;
}

/// How the handshake ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A data connection presented this session token.
    Join(command::Token),
    /// The session is admitted and told so (with its token or UDP port).
    Session,
}

/// Why the handshake failed. The driver words it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerError {
    /// The 16 bytes after the hello are neither a command nor a marker.
    BadCommand([u8; command::LEN], WireError),
    /// [`Policy::begin_login`] said no.
    LoginRefused,
    /// MSG1 is malformed (no user name was read).
    BadMsg1(ec_srp5::AuthError),
    /// MSG1's public key is invalid.
    BadKey(ec_srp5::AuthError),
    /// The MD5 digest or the EC-SRP5 proof is wrong: wrong user or password. For MD5 the
    /// driver sends [`Server::farewell`] (`00 00 00 00`); EC-SRP5 sends nothing more.
    WrongLogin,
    /// [`Policy::admit`] or [`Policy::udp_port`] said no; the close is the refusal.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Md5Reply,
    EcMsg1,
    EcMsg3,
    /// The login is done (or none was due): admit, then the OK.
    Admit,
    UdpPort,
    Done(Outcome),
}

/// The server's handshake on one accepted connection.
pub struct Server {
    state: State,
    inbox: Inbox,
    out: Outbox,
    cmd: Option<Command>,
    method: AuthMethod,
    challenge: [u8; md5::CHALLENGE_LEN],
    s_b: [u8; 32],
    ec: Option<ec_srp5::ServerHandshake>,
    user: Option<Vec<u8>>,
    authenticated: bool,
}

impl Server {
    /// A handshake that will use `challenge` for MD5 and `s_b` as EC-SRP5's private scalar
    /// (random bytes from the caller, unused unless that login is due). Starts by sending
    /// the hello.
    pub fn new(challenge: [u8; md5::CHALLENGE_LEN], s_b: [u8; 32]) -> Self {
        let mut out = Outbox::new();
        out.put(&wire::HELLO, Phase::Hello);
        let mut inbox = Inbox::new();
        inbox.expect(command::LEN, Phase::Command);
        Server {
            state: State::Command,
            inbox,
            out,
            cmd: None,
            method: AuthMethod::None,
            challenge,
            s_b,
            ec: None,
            user: None,
            authenticated: false,
        }
    }

    /// The command, once read.
    pub fn command(&self) -> Option<Command> {
        self.cmd
    }

    /// The login required (known once the command is read).
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// The user name the client presented, as soon as it is read.
    pub fn presented(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    /// Is the login over and passed (or none was due)?
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// What to send, best effort, after a [`ServerError::WrongLogin`] (MD5's `00 00 00 00`;
    /// nothing for EC-SRP5).
    pub fn farewell(&self) -> &[u8] {
        self.out.bytes()
    }

    /// Gives the machine received bytes; returns how many it took (never more than the
    /// current [`Step::Need`]).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        self.inbox.feed(input)
    }

    /// What to do next. After a `Send`, the bytes are taken as written.
    pub fn poll<P: Policy>(&mut self, policy: &mut P) -> Result<Step<'_, Outcome>, ServerError> {
        self.out.settle();
        loop {
            if self.out.len > 0 {
                self.out.given = true;
                return Ok(Step::Send(self.out.bytes(), self.out.phase));
            }
            match self.state {
                State::Done(o) => return Ok(Step::Done(o)),
                State::Admit => self.admit(policy)?,
                State::UdpPort => {
                    let cmd = self.cmd.ok_or(ServerError::Refused)?;
                    let port = policy.udp_port(&cmd).ok_or(ServerError::Refused)?;
                    self.out
                        .put(&wire::udp_port_to_bytes(port), Phase::UdpSetup);
                    self.state = State::Done(Outcome::Session);
                }
                _ if !self.inbox.ready() => {
                    return Ok(Step::Need(self.inbox.want(), self.inbox.phase))
                }
                _ => self.on_message(policy)?,
            }
        }
    }

    // Out of line: inlined into `poll`, the steps cost the router image 3.3 KiB more (opt-level
    // "z", fat LTO; issue 20 item 2, `size -A` of the x86_64 musl build).
    #[inline(never)]
    fn admit<P: Policy>(&mut self, policy: &mut P) -> Result<(), ServerError> {
        self.authenticated = true;
        let cmd = self.cmd.ok_or(ServerError::Refused)?;
        let token = policy
            .admit(&cmd, self.user.as_deref())
            .ok_or(ServerError::Refused)?;
        let reply = token.map_or(Reply::Ok, Reply::OkToken);
        self.out.put(&reply.to_bytes(), Phase::Command);
        self.state = if cmd.protocol == Protocol::Udp {
            State::UdpPort
        } else {
            State::Done(Outcome::Session)
        };
        Ok(())
    }

    // Out of line: inlined into `poll`, the steps cost the router image 3.3 KiB more (opt-level
    // "z", fat LTO; issue 20 item 2, `size -A` of the x86_64 musl build).
    #[inline(never)]
    fn on_message<P: Policy>(&mut self, policy: &mut P) -> Result<(), ServerError> {
        let msg = self.inbox.take();
        match self.state {
            State::Command => {
                let b: [u8; command::LEN] = msg.try_into().unwrap_or_default();
                let cmd = match Request::parse(&b) {
                    Ok(Request::Join(token)) => {
                        self.state = State::Done(Outcome::Join(token));
                        return Ok(());
                    }
                    Ok(Request::Command(c)) => c,
                    Err(e) => return Err(ServerError::BadCommand(b, e)),
                };
                self.cmd = Some(cmd);
                self.method = policy.method();
                if self.method != AuthMethod::None && !policy.begin_login() {
                    return Err(ServerError::LoginRefused);
                }
                match self.method {
                    AuthMethod::None => self.state = State::Admit,
                    AuthMethod::Md5 => {
                        let mut m = [0u8; 4 + md5::CHALLENGE_LEN];
                        m[..4].copy_from_slice(&Reply::NeedMd5.to_bytes());
                        m[4..].copy_from_slice(&self.challenge);
                        self.out.put(&m, Phase::Auth);
                        self.inbox.expect(md5::REPLY_LEN, Phase::Auth);
                        self.state = State::Md5Reply;
                    }
                    AuthMethod::EcSrp5 => {
                        self.out.put(&Reply::NeedEcSrp5.to_bytes(), Phase::Auth);
                        self.inbox.expect_frame();
                        self.state = State::EcMsg1;
                    }
                }
            }
            State::Md5Reply => {
                let reply: [u8; md5::REPLY_LEN] = msg.try_into().unwrap_or([0; md5::REPLY_LEN]);
                self.user = Some(md5::reply_user(&reply).to_vec());
                if !policy.md5_check(&reply, &self.challenge) {
                    self.out.put(&Reply::Failed.to_bytes(), Phase::Auth);
                    self.out.given = true;
                    return Err(ServerError::WrongLogin);
                }
                self.state = State::Admit;
            }
            State::EcMsg1 => {
                let parsed = ec_srp5::parse_msg1(msg).map_err(ServerError::BadMsg1)?;
                self.user = Some(parsed.user.to_vec());
                let verifier = policy.ec_verifier(parsed.user);
                let r = ec_srp5::ServerHandshake::new(&verifier, &parsed, self.s_b);
                self.s_b.fill(0);
                let (hs, msg2) = r.map_err(ServerError::BadKey)?;
                self.ec = Some(hs);
                self.out.put_frame(&msg2);
                self.inbox.expect_frame();
                self.state = State::EcMsg3;
            }
            State::EcMsg3 => {
                let hs = self.ec.take().ok_or(ServerError::WrongLogin)?;
                let msg4 = hs.on_msg3(msg).map_err(|_| ServerError::WrongLogin)?;
                self.out.put_frame(&msg4);
                self.state = State::Admit;
            }
            State::Admit | State::UdpPort | State::Done(_) => {}
        }
        Ok(())
    }
}
