//! Golden transcripts of every flow (the known answers of ../shared/vectors and the reference's
//! section 15), the client machine against the server machine in memory, and every split of
//! each incoming stream: the outcome never depends on how the bytes arrive, and a machine
//! never takes a byte past its handshake.
//!
//! EC-SRP5 costs a few curve multiplications per login: its transcripts are replayed whole,
//! byte by byte and cut around each message boundary, while every split of its byte stream is
//! checked on the framing alone ([`ec_frames_any_split`]), which is all a split can change.

use super::server::{Policy, ServerError};
use super::*;
use crate::auth::{ec_srp5, md5, AuthMethod};
use crate::wire::{command, Command, Reply};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

// Known answers: md5.txt, ecsrp5-admin-secret.txt, wire.txt (reference 15.2-15.4).
const CMD_TCP4: &str = "01020004008000000000000000000000";
const CMD_UDP: &str = "00030100dc05000000e1f50580f0fa02";
const MD5_CHALLENGE: &str = "ad32d6f94d28161625f2f390bb895637";
const MD5_REPLY: &str = "3c968565bc0314f281a6da1571cf7255 74657374 \
                         00000000000000000000000000000000000000000000000000000000";
const EC_SALT: &str = "000102030405060708090a0b0c0d0e0f";
const EC_SA: &str = "d74f44c460bd99bfb4fc62b142025787b514e1bce88577f57e39b72b1788742f";
const EC_SB: &str = "f1d8f6cb9a5a7e4b2979217866e66b8cf8845bbacb8f0a30b899498dcca176b1";
const EC_MSG1: &str =
    "2761646d696e006d16e19cb82b578153ca17692b1148af61a497f4c8e828cafa04c9bc1975340000";
const EC_MSG2: &str = "312bb9404820928d2353fe0c3a33f481a2c36112c9ee41ab83651e43d9d98ceb6601000102030405060708090a0b0c0d0e0f";
const EC_MSG3: &str = "2093a96efa0624fbb6cc85294f43bfa213ffd4e30a5c708abd79994a5b212d60f8";
const EC_MSG4: &str = "204626f39aa843607144e6d9d7e0a481b00a2cc6f9b1b38b882bb4502a84ed6c06";
const TOKEN: command::Token = [0xbc, 0x04];
const MARKER: &str = "bc040200000000000000000000000000";

/// A server with one account, its login method, and fixed answers for admission.
struct Accounts {
    method: AuthMethod,
    user: &'static [u8],
    password: &'static [u8],
    /// What `admit` answers: `None` refuses.
    admit: Option<Option<command::Token>>,
    udp_port: Option<u16>,
    logins: usize,
    allow_login: bool,
    admitted: Vec<Option<Vec<u8>>>,
}

fn accounts(method: AuthMethod, password: &'static [u8]) -> Accounts {
    Accounts {
        method,
        user: b"admin",
        password,
        admit: Some(None),
        udp_port: Some(2001),
        logins: 0,
        allow_login: true,
        admitted: Vec::new(),
    }
}

impl Policy for Accounts {
    fn method(&self) -> AuthMethod {
        self.method
    }
    fn begin_login(&mut self) -> bool {
        self.logins += 1;
        self.allow_login
    }
    fn md5_check(
        &self,
        reply: &[u8; md5::REPLY_LEN],
        challenge: &[u8; md5::CHALLENGE_LEN],
    ) -> bool {
        let known = md5::reply_user(reply) == self.user;
        md5::verify(reply, known.then_some(self.password), challenge)
    }
    fn ec_verifier(&self, user: &[u8]) -> ec_srp5::Verifier {
        ec_srp5::Verifier::new(user, self.password, arr(EC_SALT))
    }
    fn admit(&mut self, _cmd: &Command, user: Option<&[u8]>) -> Option<Option<command::Token>> {
        self.admitted.push(user.map(<[u8]>::to_vec));
        self.admit
    }
    fn udp_port(&mut self, _cmd: &Command) -> Option<u16> {
        self.udp_port
    }
}

fn cmd(h: &str) -> Command {
    Command::parse(&arr(h)).unwrap()
}

/// One side's view of a replay: what it sent, how it ended, and how much of the incoming
/// stream it took.
#[derive(Debug, PartialEq)]
struct Replay {
    sent: Vec<u8>,
    /// `Done(..)`, `Err(..)` or `Starved` (it wanted more than the stream held), debug-printed.
    end: String,
    taken: usize,
}

/// The polls of either machine, owned.
enum Polled {
    Send(Vec<u8>),
    Need(usize),
    End(String),
}

fn polled<T: std::fmt::Debug, E: std::fmt::Debug>(r: Result<Step<'_, T>, E>) -> Polled {
    match r {
        Ok(Step::Send(b, _)) => Polled::Send(b.to_vec()),
        Ok(Step::Need(n, _)) => {
            assert!(n > 0 && n <= MAX_MSG);
            Polled::Need(n)
        }
        Ok(Step::Done(o)) => Polled::End(format!("Done({o:?})")),
        Err(e) => Polled::End(format!("Err({e:?})")),
    }
}

/// Drives a machine with `stream` cut at `cuts` (strictly increasing, inside the stream):
/// each chunk is offered whole, and the machine takes what it needs of it.
fn replay(
    poll: &mut dyn FnMut() -> Polled,
    feed: &mut dyn FnMut(&[u8]) -> usize,
    stream: &[u8],
    cuts: &[usize],
) -> Replay {
    let mut sent = Vec::new();
    let mut pos = 0;
    let mut bounds = cuts.iter().copied().chain([stream.len()]);
    let mut end = bounds.next().unwrap_or(stream.len());
    loop {
        match poll() {
            Polled::Send(b) => sent.extend_from_slice(&b),
            Polled::End(e) => {
                return Replay {
                    sent,
                    end: e,
                    taken: pos,
                }
            }
            Polled::Need(n) => {
                while pos == end && pos < stream.len() {
                    end = bounds.next().unwrap_or(stream.len());
                }
                if pos == stream.len() {
                    return Replay {
                        sent,
                        end: "Starved".into(),
                        taken: pos,
                    };
                }
                let took = feed(&stream[pos..end]);
                assert!(took > 0 && took <= n, "took {took} of a need of {n}");
                pos += took;
            }
        }
    }
}

fn replay_client(mk: &dyn Fn() -> Client<'static>, stream: &[u8], cuts: &[usize]) -> Replay {
    let m = std::cell::RefCell::new(mk());
    replay(
        &mut || polled(m.borrow_mut().poll()),
        &mut |b| m.borrow_mut().feed(b),
        stream,
        cuts,
    )
}

fn replay_server(mk: &dyn Fn() -> Accounts, stream: &[u8], cuts: &[usize]) -> Replay {
    let m = std::cell::RefCell::new(server());
    let mut p = mk();
    let mut r = replay(
        &mut || polled(m.borrow_mut().poll(&mut p)),
        &mut |b| m.borrow_mut().feed(b),
        stream,
        cuts,
    );
    // As the driver does: MD5's refusal, best effort.
    if r.end.contains("WrongLogin") {
        r.sent.extend_from_slice(m.borrow().farewell());
    }
    r
}

fn server() -> Server {
    Server::new(arr(MD5_CHALLENGE), arr(EC_SB))
}

/// Bytes a peer sends after the handshake (test data): never the machine's.
const TAIL: &[u8] = b"data after the handshake";

/// Every single cut, and every uniform chunk size, give the same replay as the whole stream.
fn all_splits(run: &dyn Fn(&[usize]) -> Replay, len: usize) -> Replay {
    let whole = run(&[]);
    for k in 1..len {
        assert_eq!(run(&[k]), whole, "cut at {k}");
    }
    for size in 1..len {
        let cuts: Vec<usize> = (size..len).step_by(size).collect();
        assert_eq!(run(&cuts), whole, "chunks of {size}");
    }
    whole
}

/// A few splits, for the transcripts whose replays run curve arithmetic: whole, byte by byte,
/// and a cut at each message boundary and one byte either side of it.
fn some_splits(run: &dyn Fn(&[usize]) -> Replay, len: usize, boundaries: &[usize]) -> Replay {
    let whole = run(&[]);
    assert_eq!(run(&(1..len).collect::<Vec<_>>()), whole, "byte by byte");
    for &b in boundaries {
        for k in [b - 1, b, b + 1] {
            if k > 0 && k < len {
                assert_eq!(run(&[k]), whole, "cut at {k}");
            }
        }
    }
    whole
}

fn cat(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| hex(p)).collect()
}

/// Checks one flow three ways: the client replayed on the server's golden bytes, the server
/// on the client's, each under every split (or some, for EC-SRP5), and the two machines
/// against each other in memory.
struct Flow {
    client: fn() -> Client<'static>,
    policy: fn() -> Accounts,
    to_client: Vec<u8>,
    to_server: Vec<u8>,
    client_end: &'static str,
    server_end: &'static str,
    /// `Some(boundaries)`: run only some splits (EC-SRP5).
    costly: Option<Vec<usize>>,
}

impl Flow {
    fn check(&self) {
        // A handshake that ends well leaves what follows it alone.
        for (stream, ok, is_client) in [
            (&self.to_client, self.client_end.starts_with("Done"), true),
            (&self.to_server, self.server_end.starts_with("Done"), false),
        ] {
            let mut input = stream.clone();
            if ok {
                input.extend_from_slice(TAIL);
            }
            let run = |cuts: &[usize]| {
                if is_client {
                    replay_client(&|| (self.client)(), &input, cuts)
                } else {
                    replay_server(&|| (self.policy)(), &input, cuts)
                }
            };
            let got = match &self.costly {
                None => all_splits(&run, input.len()),
                Some(b) => some_splits(&run, input.len(), b),
            };
            let (want_sent, want_end) = if is_client {
                (&self.to_server, self.client_end)
            } else {
                (&self.to_client, self.server_end)
            };
            let who = if is_client { "client" } else { "server" };
            assert_eq!(hex_of(&got.sent), hex_of(want_sent), "{who} sent");
            assert_eq!(got.end, want_end, "{who} ended");
            if ok {
                assert_eq!(
                    got.taken,
                    stream.len(),
                    "{who} took bytes past the handshake"
                );
            }
        }
        // The machines against each other.
        let (c, s) = pair((self.client)(), &mut (self.policy)());
        assert_eq!((c.as_str(), s.as_str()), (self.client_end, self.server_end));
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs both machines against each other until neither can go on; the server's farewell
/// (MD5's refusal) reaches the client as the driver would send it.
fn pair(mut c: Client<'_>, p: &mut Accounts) -> (String, String) {
    let mut s = server();
    let (mut to_c, mut to_s) = (Vec::<u8>::new(), Vec::<u8>::new());
    let (mut c_end, mut s_end) = (None, None);
    for _ in 0..100 {
        if c_end.is_none() {
            match polled(c.poll()) {
                Polled::Send(b) => to_s.extend_from_slice(&b),
                Polled::Need(_) if !to_c.is_empty() => {
                    let n = c.feed(&to_c);
                    to_c.drain(..n);
                }
                Polled::Need(_) => {}
                Polled::End(e) => c_end = Some(e),
            }
        }
        if s_end.is_none() {
            match polled(s.poll(p)) {
                Polled::Send(b) => to_c.extend_from_slice(&b),
                Polled::Need(_) if !to_s.is_empty() => {
                    let n = s.feed(&to_s);
                    to_s.drain(..n);
                }
                Polled::Need(_) => {}
                Polled::End(e) => {
                    if e.contains("WrongLogin") {
                        to_c.extend_from_slice(s.farewell());
                    }
                    s_end = Some(e);
                }
            }
        }
    }
    let starved = || "Starved".to_string();
    (c_end.unwrap_or_else(starved), s_end.unwrap_or_else(starved))
}

fn creds_admin_secret() -> Option<(&'static [u8], &'static [u8])> {
    Some((b"admin", b"secret"))
}

#[test]
fn no_login_tcp() {
    Flow {
        client: || Client::new(&cmd(CMD_TCP4), None, [0; 32]),
        policy: || {
            let mut a = accounts(AuthMethod::None, b"");
            a.admit = Some(None);
            a
        },
        to_client: cat(&["01000000", "01000000"]),
        to_server: cat(&[CMD_TCP4]),
        client_end: "Done(Outcome { reply: Ok, auth: None, udp_port: None })",
        server_end: "Done(Session)",
        costly: None,
    }
    .check();
}

#[test]
fn multi_connection_token_and_join() {
    Flow {
        client: || Client::new(&cmd(CMD_TCP4), None, [0; 32]),
        policy: || {
            let mut a = accounts(AuthMethod::None, b"");
            a.admit = Some(Some(TOKEN));
            a
        },
        to_client: cat(&["01000000", "01bc0400"]),
        to_server: cat(&[CMD_TCP4]),
        client_end: "Done(Outcome { reply: OkToken([188, 4]), auth: None, udp_port: None })",
        server_end: "Done(Session)",
        costly: None,
    }
    .check();
    // The data connection: hello, the marker (reference 15.2), nothing back.
    Flow {
        client: || Client::join(TOKEN),
        policy: || accounts(AuthMethod::EcSrp5, b"x"),
        to_client: cat(&["01000000"]),
        to_server: cat(&[MARKER]),
        client_end: "Done(Outcome { reply: Ok, auth: None, udp_port: None })",
        server_end: "Done(Join([188, 4]))",
        costly: None,
    }
    .check();
}

#[test]
fn udp_with_port_reply() {
    Flow {
        client: || Client::new(&cmd(CMD_UDP), None, [0; 32]),
        policy: || accounts(AuthMethod::None, b""),
        // OK, then port 2001 (reference 15.2)
        to_client: cat(&["01000000", "01000000", "07d1"]),
        to_server: cat(&[CMD_UDP]),
        client_end: "Done(Outcome { reply: Ok, auth: None, udp_port: Some(2001) })",
        server_end: "Done(Session)",
        costly: None,
    }
    .check();
}

#[test]
fn md5_accept_and_reject() {
    Flow {
        client: || Client::new(&cmd(CMD_UDP), Some((b"test", b"test")), [0; 32]),
        policy: || Accounts {
            user: b"test",
            ..accounts(AuthMethod::Md5, b"test")
        },
        to_client: cat(&["01000000", "02000000", MD5_CHALLENGE, "01000000", "07d1"]),
        to_server: cat(&[CMD_UDP, MD5_REPLY]),
        client_end: "Done(Outcome { reply: Ok, auth: Md5, udp_port: Some(2001) })",
        server_end: "Done(Session)",
        costly: None,
    }
    .check();
    Flow {
        client: || Client::new(&cmd(CMD_TCP4), Some((b"test", b"test")), [0; 32]),
        policy: || Accounts {
            user: b"test",
            ..accounts(AuthMethod::Md5, b"other")
        },
        to_client: cat(&["01000000", "02000000", MD5_CHALLENGE, "00000000"]),
        to_server: cat(&[CMD_TCP4, MD5_REPLY]),
        client_end: "Err(Rejected(Md5))",
        server_end: "Err(WrongLogin)",
        costly: None,
    }
    .check();
}

#[test]
fn ecsrp5_accept_and_reject() {
    // The vector's transcript (ecsrp5-admin-secret.txt), then an OK with a token.
    let to_client = cat(&["01000000", "03000000", EC_MSG2, EC_MSG4, "01bc0400"]);
    let to_server = cat(&[CMD_TCP4, EC_MSG1, EC_MSG3]);
    Flow {
        client: || Client::new(&cmd(CMD_TCP4), creds_admin_secret(), arr(EC_SA)),
        policy: || Accounts {
            admit: Some(Some(TOKEN)),
            ..accounts(AuthMethod::EcSrp5, b"secret")
        },
        to_client: to_client.clone(),
        to_server: to_server.clone(),
        client_end: "Done(Outcome { reply: OkToken([188, 4]), auth: EcSrp5, udp_port: None })",
        server_end: "Done(Session)",
        // Every split would take 11.6 s in a debug build (measured): the framing's splits
        // are [`ec_frames_any_split`].
        costly: Some(vec![4, 8, 58, 91, 95, 16, 56, 89]),
    }
    .check();
    // A wrong password: the client's MSG3 fails the server's check, which sends nothing more
    // (its driver closes, and the client reads the close as the verdict).
    let mut p = accounts(AuthMethod::EcSrp5, b"wrong");
    let c = Client::new(&cmd(CMD_TCP4), creds_admin_secret(), arr(EC_SA));
    let (c_end, s_end) = pair(c, &mut p);
    assert_eq!(
        (c_end.as_str(), s_end.as_str()),
        ("Starved", "Err(WrongLogin)")
    );
    assert_eq!(p.admitted, Vec::<Option<Vec<u8>>>::new());
    // The client's side of a server that proves a wrong verifier: the vector with MSG4 altered.
    let mut bad4 = hex(EC_MSG4);
    bad4[5] ^= 1;
    let stream = [cat(&["01000000", "03000000", EC_MSG2]), bad4].concat();
    let r = replay_client(
        &|| Client::new(&cmd(CMD_TCP4), creds_admin_secret(), arr(EC_SA)),
        &stream,
        &[],
    );
    assert!(r.end.starts_with("Err(BadMsg4("), "{}", r.end);
    assert_eq!(r.sent, to_server);
}

#[test]
fn ec_frames_any_split() {
    // Every split of the EC-SRP5 part of the transcripts, on the framing the machines use.
    for stream in [
        cat(&[EC_MSG1, EC_MSG3]),
        cat(&[EC_MSG2, EC_MSG4]),
        cat(&["00", "05", "0102030405", "00"]),
    ] {
        let frames = |cuts: &[usize]| {
            let mut inbox = Inbox::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut bounds = cuts.iter().copied().chain([stream.len()]);
            let mut end = bounds.next().unwrap();
            inbox.expect_frame();
            while pos < stream.len() {
                while pos == end {
                    end = bounds.next().unwrap();
                }
                pos += inbox.feed(&stream[pos..end]);
                if inbox.ready() {
                    out.push(inbox.take().to_vec());
                    inbox.expect_frame();
                }
            }
            assert_eq!(inbox.want(), 1);
            out
        };
        let whole = frames(&[]);
        for k in 1..stream.len() {
            assert_eq!(frames(&[k]), whole);
        }
        assert_eq!(frames(&(1..stream.len()).collect::<Vec<_>>()), whole);
    }
}

#[test]
fn refusals_and_bad_bytes_name_the_phase() {
    let client = |stream: &str, creds| {
        replay_client(
            &|| Client::new(&cmd(CMD_TCP4), creds, [0; 32]),
            &hex(stream),
            &[],
        )
        .end
    };
    // not the hello
    assert!(client("02000000", None).starts_with("Err(Hello("));
    // 00 00 00 00 without a login asked
    assert_eq!(client("01000000 00000000", None), "Err(Refused)");
    // a login asked of a client without credentials
    assert_eq!(
        client("01000000 03000000", None),
        "Err(NoCredentials(EcSrp5))"
    );
    assert_eq!(client("01000000 02000000", None), "Err(NoCredentials(Md5))");
    // no reply at all
    assert!(client("01000000 09000000", None).starts_with("Err(Reply(Command,"));
    // an MD5 login answered with a login request
    let md5 = "01000000 02000000 ad32d6f94d28161625f2f390bb895637";
    assert_eq!(
        client(&format!("{md5} 03000000"), Some((b"t", b"t"))),
        "Err(Unexpected(NeedEcSrp5))"
    );
    assert!(client(&format!("{md5} 01000001"), Some((b"t", b"t"))).starts_with("Err(Reply(Auth,"));
    // The OK sent twice reads as port 256 (issue 8.6): said so.
    let r = replay_client(
        &|| Client::new(&cmd(CMD_UDP), Some((b"t", b"t")), [0; 32]),
        &hex(&format!("{md5} 01000000 0100")),
        &[],
    );
    assert!(
        r.end.contains("the server probably sent its OK twice"),
        "{}",
        r.end
    );
    assert!(r.end.contains("after the MD5 login"), "{}", r.end);
    // EC-SRP5 user name too long for MSG1
    let long: &'static [u8] = Box::leak(vec![b'u'; ec_srp5::MAX_USER_LEN + 1].into_boxed_slice());
    let r = replay_client(
        &|| Client::new(&cmd(CMD_TCP4), Some((long, b"p")), [0; 32]),
        &hex("01000000 03000000"),
        &[],
    );
    assert_eq!(r.end, "Err(UserTooLong)");

    let on_server = |mk: &dyn Fn() -> Accounts, stream: &[u8]| replay_server(mk, stream, &[]);
    let r = on_server(
        &|| accounts(AuthMethod::None, b""),
        &hex("07000000000000000000000000000000"),
    );
    assert!(r.end.starts_with("Err(BadCommand("), "{}", r.end);
    assert_eq!(r.sent, hex("01000000"));
    // MSG1 without the NUL that ends the user name: no name presented
    let r = on_server(
        &|| accounts(AuthMethod::EcSrp5, b"x"),
        &cat(&[CMD_TCP4, "03616263"]),
    );
    assert_eq!(r.end, "Err(BadMsg1(NoUserTerminator))");
    // the login rate limit, before any of the login's work: nothing sent after the hello
    let r = on_server(
        &|| Accounts {
            allow_login: false,
            ..accounts(AuthMethod::EcSrp5, b"x")
        },
        &cat(&[CMD_TCP4, EC_MSG1]),
    );
    assert_eq!(
        (r.end.as_str(), r.sent),
        ("Err(LoginRefused)", hex("01000000"))
    );
    // a session refused after its login: no OK (the close is the refusal)
    let r = on_server(
        &|| Accounts {
            admit: None,
            user: b"test",
            ..accounts(AuthMethod::Md5, b"test")
        },
        &cat(&[CMD_TCP4, MD5_REPLY]),
    );
    assert_eq!(r.end, "Err(Refused)");
    assert_eq!(
        hex_of(&r.sent),
        hex_of(&cat(&["01000000", "02000000", MD5_CHALLENGE]))
    );
    // a UDP port refused after the OK
    let r = on_server(
        &|| Accounts {
            udp_port: None,
            ..accounts(AuthMethod::None, b"")
        },
        &hex(CMD_UDP),
    );
    assert_eq!(
        (r.end.as_str(), r.sent),
        ("Err(Refused)", hex("01000000 01000000"))
    );
}

#[test]
fn the_server_presents_the_user_as_soon_as_it_is_read() {
    let mut s = server();
    let mut p = Accounts {
        user: b"test",
        ..accounts(AuthMethod::Md5, b"other")
    };
    let stream = cat(&[CMD_TCP4, MD5_REPLY]);
    let mut pos = 0;
    let e = loop {
        match s.poll(&mut p) {
            Ok(Step::Need(n, _)) => pos += s.feed(&stream[pos..pos + n]),
            Ok(Step::Send(..)) => {}
            Ok(Step::Done(o)) => panic!("{o:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(e, ServerError::WrongLogin);
    assert_eq!(s.presented(), Some(&b"test"[..]));
    assert!(!s.authenticated());
    assert_eq!(s.farewell(), Reply::Failed.to_bytes());
    assert_eq!(s.command(), Some(cmd(CMD_TCP4)));
}
