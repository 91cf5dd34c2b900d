//! The client's handshake machine (diagram in the parent module): from the server's hello to
//! the reply that starts the test, through the login the server asks for, and the UDP port.
//! A join connection of a multi-connection TCP test runs [`Client::join`]: hello, marker.
//!
//! Must not: do I/O, read clocks or log (see the parent module); the driver is client.rs.

use super::{Inbox, Outbox, Step};
use crate::auth::{ec_srp5, md5, AuthMethod};
use crate::error::Phase;
use crate::wire::{self, command, Command, Protocol, Reply, WireError};

/// How the handshake ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The accepting reply: `Ok`, or `OkToken` for a multi-connection TCP test.
    pub reply: Reply,
    /// The login the server asked for.
    pub auth: AuthMethod,
    /// The server's UDP port (UDP tests).
    pub udp_port: Option<u16>,
}

/// Why the handshake failed, as the server's bytes said it. The driver words it.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The first 4 bytes were not the btest hello.
    Hello(WireError),
    /// The reply to the command (`Phase::Command`) or the verdict after a login
    /// (`Phase::Auth`) is no reply.
    Reply(Phase, WireError),
    /// `00 00 00 00` to the command, without a login asked.
    Refused,
    /// The server asks for a login and we have no user and password.
    NoCredentials(AuthMethod),
    /// The user name is too long for EC-SRP5's MSG1.
    UserTooLong,
    /// `00 00 00 00` after the login.
    Rejected(AuthMethod),
    /// A reply after the login that is neither an OK nor a refusal.
    Unexpected(Reply),
    /// MSG2 is not a valid server message.
    BadMsg2(ec_srp5::AuthError),
    /// MSG4 does not prove the server knows the verifier (wrong password, mostly).
    BadMsg4(ec_srp5::AuthError),
    /// The UDP port is not one a server hands out; the text says what arrived and why.
    UdpPort(String),
}

/// A frame with no EC-SRP5 exchange under way (unreachable: the states follow the exchange).
const OUT_OF_ORDER: ec_srp5::AuthError = ec_srp5::AuthError::OutOfOrder {
    what: "no EC-SRP5 exchange under way",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hello,
    Reply,
    Md5Challenge,
    EcMsg2,
    EcMsg4,
    Verdict,
    UdpPort,
    Done,
}

/// The client's handshake on connection 0 (or on a join connection).
pub struct Client<'a> {
    state: State,
    inbox: Inbox,
    out: Outbox,
    /// The command, or the join marker when `join` is set.
    first: [u8; command::LEN],
    join: bool,
    udp: bool,
    creds: Option<(&'a [u8], &'a [u8])>,
    s_a: [u8; 32],
    ec: Option<ec_srp5::ClientHandshake>,
    outcome: Outcome,
}

impl<'a> Client<'a> {
    /// The handshake of a test's first connection: `cmd`, then the login with `creds` (user,
    /// password) if the server asks for one, with `s_a` as EC-SRP5's private scalar (32
    /// random bytes; unused otherwise).
    pub fn new(cmd: &Command, creds: Option<(&'a [u8], &'a [u8])>, s_a: [u8; 32]) -> Self {
        Self::start(
            cmd.to_bytes(),
            false,
            cmd.protocol == Protocol::Udp,
            creds,
            s_a,
        )
    }

    /// The handshake of an extra data connection: hello, then the marker with `token`.
    /// Nothing comes back (reference 8.3).
    pub fn join(token: command::Token) -> Client<'static> {
        Client::start(command::marker_to_bytes(token), true, false, None, [0; 32])
    }

    fn start(
        first: [u8; command::LEN],
        join: bool,
        udp: bool,
        creds: Option<(&'a [u8], &'a [u8])>,
        s_a: [u8; 32],
    ) -> Self {
        let mut inbox = Inbox::new();
        inbox.expect(wire::HELLO.len(), Phase::Hello);
        Client {
            state: State::Hello,
            inbox,
            out: Outbox::new(),
            first,
            join,
            udp,
            creds,
            s_a,
            ec: None,
            outcome: Outcome {
                reply: Reply::Ok,
                auth: AuthMethod::None,
                udp_port: None,
            },
        }
    }

    /// The login the server asked for (so far).
    pub fn method(&self) -> AuthMethod {
        self.outcome.auth
    }

    /// Gives the machine received bytes; returns how many it took (never more than the
    /// current [`Step::Need`]: the rest belongs to what follows).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        self.inbox.feed(input)
    }

    /// What to do next. After a `Send`, the bytes are taken as written.
    pub fn poll(&mut self) -> Result<Step<'_, Outcome>, ClientError> {
        self.out.settle();
        loop {
            if self.out.len > 0 {
                self.out.given = true;
                return Ok(Step::Send(self.out.bytes(), self.out.phase));
            }
            if self.state == State::Done {
                return Ok(Step::Done(self.outcome));
            }
            if !self.inbox.ready() {
                return Ok(Step::Need(self.inbox.want(), self.inbox.phase));
            }
            self.on_message()?;
        }
    }

    // Out of line: inlined into `poll`, the steps cost the router image 3.3 KiB more (opt-level
    // "z", fat LTO; issue 20 item 2, `size -A` of the x86_64 musl build).
    #[inline(never)]
    fn on_message(&mut self) -> Result<(), ClientError> {
        let method = self.outcome.auth;
        let msg = self.inbox.take();
        match self.state {
            State::Hello => {
                let b: [u8; 4] = msg.try_into().unwrap_or_default();
                wire::parse_hello(&b).map_err(ClientError::Hello)?;
                if self.join {
                    self.out.put(&self.first, Phase::Join);
                    self.state = State::Done;
                } else {
                    self.out.put(&self.first, Phase::Command);
                    self.inbox.expect(wire::reply::LEN, Phase::Command);
                    self.state = State::Reply;
                }
            }
            State::Reply => {
                let b: [u8; 4] = msg.try_into().unwrap_or_default();
                match Reply::parse(&b).map_err(|e| ClientError::Reply(Phase::Command, e))? {
                    r @ (Reply::Ok | Reply::OkToken(_)) => self.accepted(r),
                    Reply::Failed => return Err(ClientError::Refused),
                    Reply::NeedMd5 => {
                        self.outcome.auth = AuthMethod::Md5;
                        self.creds()?;
                        self.inbox.expect(md5::CHALLENGE_LEN, Phase::Auth);
                        self.state = State::Md5Challenge;
                    }
                    Reply::NeedEcSrp5 => {
                        self.outcome.auth = AuthMethod::EcSrp5;
                        let (user, pw) = self.creds()?;
                        if user.len() > ec_srp5::MAX_USER_LEN {
                            return Err(ClientError::UserTooLong);
                        }
                        let (hs, msg1) = ec_srp5::ClientHandshake::new(user, pw, self.s_a);
                        self.s_a.fill(0);
                        self.ec = Some(hs);
                        self.out.put_frame(&msg1);
                        self.inbox.expect_frame();
                        self.state = State::EcMsg2;
                    }
                }
            }
            State::Md5Challenge => {
                let challenge: [u8; md5::CHALLENGE_LEN] = msg.try_into().unwrap_or_default();
                let (user, pw) = self.creds()?;
                self.out
                    .put(&md5::client_reply(user, pw, &challenge), Phase::Auth);
                self.inbox.expect(wire::reply::LEN, Phase::Auth);
                self.state = State::Verdict;
            }
            State::EcMsg2 => {
                // (set with MSG1: the state says it is there)
                let hs = self.ec.as_mut().ok_or(ClientError::BadMsg2(OUT_OF_ORDER))?;
                let msg3 = hs.on_msg2(msg).map_err(ClientError::BadMsg2)?;
                self.out.put_frame(&msg3);
                self.inbox.expect_frame();
                self.state = State::EcMsg4;
            }
            State::EcMsg4 => {
                let hs = self.ec.as_ref().ok_or(ClientError::BadMsg4(OUT_OF_ORDER))?;
                hs.on_msg4(msg).map_err(ClientError::BadMsg4)?;
                self.inbox.expect(wire::reply::LEN, Phase::Auth);
                self.state = State::Verdict;
            }
            State::Verdict => {
                let b: [u8; 4] = msg.try_into().unwrap_or_default();
                match Reply::parse(&b).map_err(|e| ClientError::Reply(Phase::Auth, e))? {
                    r @ (Reply::Ok | Reply::OkToken(_)) => self.accepted(r),
                    Reply::Failed => return Err(ClientError::Rejected(method)),
                    other => return Err(ClientError::Unexpected(other)),
                }
            }
            State::UdpPort => {
                let b: [u8; 2] = msg.try_into().unwrap_or_default();
                let port =
                    wire::parse_udp_port(&b).map_err(|e| ClientError::UdpPort(e.to_string()))?;
                check_udp_port(port, b, method).map_err(ClientError::UdpPort)?;
                self.outcome.udp_port = Some(port);
                self.state = State::Done;
            }
            State::Done => {}
        }
        Ok(())
    }

    fn creds(&self) -> Result<(&'a [u8], &'a [u8]), ClientError> {
        self.creds
            .ok_or(ClientError::NoCredentials(self.outcome.auth))
    }

    /// An OK: the test starts, after the UDP port in a UDP test.
    fn accepted(&mut self, r: Reply) {
        self.outcome.reply = r;
        self.ec = None;
        if self.udp {
            self.inbox.expect(2, Phase::UdpSetup);
            self.state = State::UdpPort;
        } else {
            self.state = State::Done;
        }
    }
}

/// A server's UDP port below 1024 is not one a btest server hands out (RouterOS starts at
/// 2001). Seen in the wild: a server that sends its OK (`01 00 00 00`) twice after MD5, whose
/// second copy then reads as port 256 (issue 8.6). Say what arrived, where, and why.
fn check_udp_port(port: u16, bytes: [u8; 2], auth: AuthMethod) -> Result<(), String> {
    if port >= 1024 {
        return Ok(());
    }
    let after = match auth {
        AuthMethod::None => "the command reply".to_string(),
        m => format!("the {} login", crate::error::auth_method_name(m.as_str())),
    };
    let hint = if bytes == [0x01, 0x00] {
        "01 00 is how an OK reply (01 00 00 00) starts: the server probably sent its OK twice, \
         which is a bug in that server"
    } else {
        "btest servers hand out UDP ports from 2001 up"
    };
    Err(format!(
        "expected the server's UDP port after {after}, got bytes {:02x} {:02x} (port {port}); \
         {hint}",
        bytes[0], bytes[1]
    ))
}
