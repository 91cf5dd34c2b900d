//! Authentication end to end over loopback: MD5 and EC-SRP5, TCP and UDP in every direction,
//! four connections; wrong password and unknown user fail cleanly and the server keeps serving.

use btest::auth::AuthMethod;
use btest::wire::{Direction, Protocol};
use btest::Error;

use crate::util::*;

fn auth_server(method: AuthMethod) -> TestServer {
    let mut cfg = server_cfg();
    cfg.auth = method;
    cfg.users = vec![
        ("admin".into(), "secret".into()),
        ("empty".into(), "".into()),
        (
            "a-rather-long-user-name-of-forty-bytes!!".into(),
            "p:w".into(),
        ),
    ];
    start_server(cfg)
}

fn login(
    srv: &TestServer,
    proto: Protocol,
    dir: Direction,
    user: &str,
    pw: &str,
    conns: u8,
) -> btest::Result<btest::client::ClientResult> {
    let mut c = client_cfg(srv.addr, proto, dir, 1.2);
    c.user = Some(user.into());
    c.password = Some(pw.into());
    c.connection_count = conns;
    c.local_tx_speed = 100_000_000;
    c.remote_tx_speed = 100_000_000;
    run_client(&c).0
}

fn matrix(method: AuthMethod) {
    let srv = auth_server(method);
    for proto in [Protocol::Tcp, Protocol::Udp] {
        for dir in DIRECTIONS {
            let mut c = client_cfg(srv.addr, proto, dir, 1.2);
            c.user = Some("admin".into());
            c.password = Some("secret".into());
            c.local_tx_speed = 100_000_000;
            c.remote_tx_speed = 100_000_000;
            let (r, rec) = check_flow(&srv, &c);
            assert_eq!(r.auth, method);
            assert_eq!(rec.start.user.as_deref(), Some("admin"));
            assert_eq!(rec.start.auth, method);
        }
    }
    // four connections after authentication (the token comes in the post-auth OK)
    let mut c = client_cfg(srv.addr, Protocol::Tcp, Direction::Both, 1.2);
    c.user = Some("admin".into());
    c.password = Some("secret".into());
    c.connection_count = 4;
    c.local_tx_speed = 200_000_000;
    c.remote_tx_speed = 200_000_000;
    check_flow(&srv, &c);
    // empty password and a long name with a colon in the password
    let r = login(&srv, Protocol::Tcp, Direction::ServerTx, "empty", "", 1).unwrap();
    assert!(r.succeeded());
    let _ = srv.next_session(std::time::Duration::from_secs(3));
    let r = login(
        &srv,
        Protocol::Tcp,
        Direction::ServerTx,
        "a-rather-long-user-name-of-forty-bytes!!",
        "p:w",
        1,
    );
    if method == AuthMethod::Md5 {
        // MD5's user field is 32 bytes: the name arrives truncated and is not found
        assert!(matches!(r, Err(Error::Auth { .. })), "{r:?}");
        let _ = srv.next_refusal(std::time::Duration::from_secs(3));
    } else {
        assert!(r.unwrap().succeeded());
        let _ = srv.next_session(std::time::Duration::from_secs(3));
    }
    failures(&srv, method);
    srv.assert_idle();
}

fn failures(srv: &TestServer, method: AuthMethod) {
    for (user, pw) in [("admin", "wrong"), ("nobody", "secret"), ("admin", "")] {
        let r = login(srv, Protocol::Tcp, Direction::Both, user, pw, 4);
        match r {
            Err(Error::Auth { method: m, detail }) => {
                assert_eq!(m, method.as_str());
                assert!(detail.contains("user and password"), "{detail}");
            }
            other => panic!("{user}/{pw}: expected an authentication error, got {other:?}"),
        }
        // a failed login is one auth_failure record, never a session end (issue 8.5)
        match srv.next_refusal(std::time::Duration::from_secs(3)) {
            btest::server::ServerEvent::AuthFailed {
                user: u, method: m, ..
            } => {
                assert_eq!(m, method);
                assert_eq!(u.as_deref(), Some(user), "the name as presented");
            }
            other => panic!("{user}/{pw}: expected an auth failure, got {other:?}"),
        }
        let e = btest::Error::Auth {
            method: "ecsrp5",
            detail: String::new(),
        };
        assert_eq!(e.exit_code(), 1, "client exit code for a failed login");
    }
    // no credentials at all
    let c = client_cfg(srv.addr, Protocol::Tcp, Direction::ServerTx, 1.0);
    match run_client(&c).0 {
        Err(Error::Auth { detail, .. }) => assert!(detail.contains("--user"), "{detail}"),
        other => panic!("expected a missing-credentials error, got {other:?}"),
    }
    // issue 19: the server records a login without a name (its log says the client had no
    // credentials), for MD5 as for EC-SRP5
    match srv.next_refusal(std::time::Duration::from_secs(3)) {
        btest::server::ServerEvent::AuthFailed { user, .. } => assert_eq!(user, None),
        other => panic!("expected an auth failure without a user, got {other:?}"),
    }
    // still serving
    let r = login(srv, Protocol::Udp, Direction::Both, "admin", "secret", 1).unwrap();
    assert!(r.succeeded());
    let _ = srv.next_session(std::time::Duration::from_secs(3));
}

#[test]
fn md5_end_to_end() {
    watchdog(90, || matrix(AuthMethod::Md5));
}

#[test]
fn ecsrp5_end_to_end() {
    watchdog(90, || matrix(AuthMethod::EcSrp5));
}

/// Issue 18: a user name with a newline, sent in a login, must not forge a log line, and a
/// CSV cell with it must not start a formula. Runs the built server with `-v` (so successful
/// and failed logins are both logged) and reads its whole stderr.
fn forged_name_is_escaped(method: &str) {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let csv = std::env::temp_dir().join(format!(
        "btest-test-{}-forge-{method}.csv",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&csv);
    let child = btest_bin()
        .args(["server", "-v", "--listen", "127.0.0.1:0", "--auth", method])
        .args(["--user", "admin", "--password", "secret", "--echo", "no"])
        .args(["--udp-port-from", &udp_base().to_string()])
        .arg("--csv")
        .arg(&csv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // killed and reaped on every way out, a failed assertion included
    let mut child = Proc::new(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    assert!(wait_until(Duration::from_secs(5), || lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("listening on"))));
    let addr: std::net::SocketAddr = {
        let l = lines.lock().unwrap();
        let l = l.iter().find(|l| l.contains("listening on")).unwrap();
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // 28 bytes: fits MD5's 32-byte user field whole
    let forged = "=1+1\nbtest[main] info: forged";
    let mut c = client_cfg(addr, Protocol::Tcp, Direction::ServerTx, 1.0);
    c.user = Some(forged.into());
    c.password = Some("secret".into());
    let r = run_client(&c).0;
    assert!(matches!(r, Err(Error::Auth { .. })), "{r:?}");
    let escaped = "=1+1\\nbtest[main] info: forged";
    assert!(
        wait_until(Duration::from_secs(5), || lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(escaped))),
        "no escaped name in {:?}",
        lines.lock().unwrap()
    );
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&csv).is_ok_and(|t| t.lines().count() >= 2)
    }));
    signal(child.id(), "-TERM");
    child.wait().unwrap();
    let all = lines.lock().unwrap().clone();
    for l in &all {
        assert!(
            !l.starts_with("btest[main] info: forged"),
            "forged line: {all:#?}"
        );
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let _ = std::fs::remove_file(&csv);
    // RFC 4180 quoting keeps the newline inside the cell; the cell starts with a quote
    assert!(
        text.contains(",\"'=1+1\nbtest[main] info: forged\","),
        "{text}"
    );
    assert!(!text.contains(",=1+1"), "{text}");
}

#[test]
fn md5_forged_user_name_is_escaped_in_log_and_csv() {
    watchdog(40, || forged_name_is_escaped("md5"));
}

#[test]
fn ecsrp5_forged_user_name_is_escaped_in_log_and_csv() {
    watchdog(40, || forged_name_is_escaped("ecsrp5"));
}

/// Issue 18: an EC-SRP5 login the server's guard cuts at its handshake deadline is a timeout,
/// not a failed login: a raw client sends the command and MSG1, reads MSG2 and then stalls
/// (a slow client computing MSG3) past a 1 s `--handshake-timeout`.
#[test]
fn ecsrp5_login_cut_at_the_deadline_is_a_timeout_on_the_server() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    watchdog(30, || {
        let mut cfg = server_cfg();
        cfg.auth = AuthMethod::EcSrp5;
        cfg.users = vec![("admin".into(), "secret".into())];
        cfg.handshake_timeout = Duration::from_secs(1);
        let srv = start_server(cfg);
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b4 = [0u8; 4];
        s.read_exact(&mut b4).unwrap();
        assert_eq!(b4, [1, 0, 0, 0]);
        let cmd = btest::wire::Command {
            protocol: Protocol::Tcp,
            direction: Direction::ServerTx,
            random_data: false,
            connection_count: 0,
            tx_size: btest::wire::TCP_CHUNK_SIZE,
            client_buf_size: 0,
            remote_tx_speed: 1_000_000,
            local_tx_speed: 0,
        };
        s.write_all(&cmd.to_bytes()).unwrap();
        s.read_exact(&mut b4).unwrap();
        assert_eq!(b4, [3, 0, 0, 0], "the server asks for EC-SRP5");
        let (_hs, msg1) = btest::auth::ec_srp5::ClientHandshake::new(b"admin", b"secret", [7; 32]);
        s.write_all(&btest::auth::ec_srp5::frame(&msg1).unwrap())
            .unwrap();
        let mut len = [0u8; 1];
        s.read_exact(&mut len).unwrap();
        let mut msg2 = vec![0u8; usize::from(len[0])];
        s.read_exact(&mut msg2).unwrap();
        // Stall: never send MSG3. The guard shuts the socket at the deadline.
        let t0 = Instant::now();
        let mut rest = [0u8; 64];
        let closed = matches!(s.read(&mut rest), Ok(0) | Err(_));
        assert!(closed && t0.elapsed() < Duration::from_secs(5));
        match srv.next_refusal(Duration::from_secs(5)) {
            btest::server::ServerEvent::Rejected(r) => {
                assert_eq!(r.phase, btest::error::Phase::Auth, "{r:?}");
                assert_eq!(r.reason, btest::server::RejectReason::Timeout, "{r:?}");
                assert!(r.error.contains("timed out"), "{r:?}");
            }
            other => panic!("expected a timeout rejection, got {other:?}"),
        }
        srv.assert_idle();
        // Not counted as a wrong login: the same source still logs in at once.
        let r = login(
            &srv,
            Protocol::Tcp,
            Direction::ServerTx,
            "admin",
            "secret",
            1,
        )
        .unwrap();
        assert!(r.succeeded());
    });
}

/// A fake EC-SRP5 server: hello, reads the command, asks for EC-SRP5, reads MSG1, waits
/// `delay` and closes without MSG2, `conns` times; returns its address.
fn fake_ecsrp5_server(delay: std::time::Duration, conns: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = (|| -> std::io::Result<()> {
                s.write_all(&[1, 0, 0, 0])?;
                let mut cmd = [0u8; 16];
                s.read_exact(&mut cmd)?;
                s.write_all(&[3, 0, 0, 0])?;
                let mut len = [0u8; 1];
                s.read_exact(&mut len)?;
                let mut msg1 = vec![0u8; usize::from(len[0])];
                s.read_exact(&mut msg1)?;
                std::thread::sleep(delay);
                Ok(())
            })();
        }
    });
    addr
}

/// The client side: a server that closes the login long after MSG1 (its deadline) is a
/// timeout in the authentication phase, which fleet retries; one that closes at once is
/// still an authentication failure (docs/protocol.md 14.10).
#[test]
fn a_login_closed_late_is_a_client_timeout_and_fleet_retries_it() {
    use std::time::Duration;
    watchdog(60, || {
        let fake = fake_ecsrp5_server(Duration::from_millis(1500), 1);
        let mut c = client_cfg(fake, Protocol::Tcp, Direction::ServerTx, 1.0);
        c.user = Some("admin".into());
        c.password = Some("secret".into());
        c.latency = btest::config::Latency::Off;
        let e = run_client(&c).0.unwrap_err();
        match &e {
            Error::Timeout {
                phase: btest::error::Phase::Auth,
                secs,
                ..
            } => assert!(*secs >= 1.0, "{e:?}"),
            other => panic!("expected a timeout in the authentication phase, got {other:?}"),
        }
        assert!(btest::fleet::retryable(&e));
        assert!(e.to_string().contains("not a wrong password"), "{e}");

        // A prompt close after MSG1 is still the server's "no".
        let fake = fake_ecsrp5_server(Duration::ZERO, 1);
        let mut c2 = c.clone();
        c2.port = fake.port();
        match run_client(&c2).0 {
            Err(e @ Error::Auth { .. }) => assert!(!btest::fleet::retryable(&e)),
            other => panic!("expected an authentication error, got {other:?}"),
        }

        // The binary: exit 1, an error record of the authentication phase that says timeout.
        let fake = fake_ecsrp5_server(Duration::from_millis(1500), 1);
        let o = btest_bin()
            .args([
                "client",
                &fake.to_string(),
                "--user",
                "admin",
                "--password",
                "x",
            ])
            .args(["--latency", "off", "--json", "--duration", "1s"])
            .output()
            .unwrap();
        assert_exit(&o, 1);
        let recs = json_lines(&o.stdout);
        let err = recs
            .iter()
            .find(|r| r["type"] == "error")
            .expect("error record");
        assert_eq!(err["phase"], "authentication", "{err}");
        assert!(
            err["message"].as_str().unwrap().contains("timed out"),
            "{err}"
        );

        // fleet retries it (and would not retry a wrong password, fleet.rs tests).
        let fake = fake_ecsrp5_server(Duration::from_millis(1500), 2);
        let dir = std::env::temp_dir().join(format!("btest-i18-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets");
        std::fs::write(
            &file,
            format!("late {fake} --user admin --password x --latency off --retries 1\n"),
        )
        .unwrap();
        let o = btest_bin()
            .args(["fleet", file.to_str().unwrap(), "--retry-delay", "100ms"])
            .output()
            .unwrap();
        assert_exit(&o, 1);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("late attempt 1 failed") && err.contains("retrying"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
