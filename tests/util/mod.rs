//! Shared test helpers: a server on an ephemeral loopback port that stops on drop, a client
//! run with a watchdog, and polling for the server's counters to settle.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use btest::client::{self, ClientResult};
use btest::config::{ClientConfig, ServerConfig};
use btest::engine::{Sample, Stop};
use btest::server::{Server, ServerEvent, ServerHandle, ServerStats, SessionRecord};
use btest::wire::{Direction, Protocol};

/// UDP port ranges are fixed by the protocol (client = server + 256), so every test's server
/// gets its own 300-port range to keep parallel tests apart.
pub fn udp_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(20000);
    NEXT.fetch_add(300, Ordering::SeqCst)
}

/// A server for one test; stops and joins on drop.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn h(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn stats(&self) -> ServerStats {
        self.h().stats()
    }

    /// The next finished session (start and auth-failure events are skipped).
    pub fn next_session(&self, timeout: Duration) -> SessionRecord {
        let t0 = Instant::now();
        loop {
            let left = timeout.saturating_sub(t0.elapsed());
            match self.h().events().recv_timeout(left) {
                Ok(ServerEvent::End(r)) => return *r,
                Ok(_) => {}
                Err(_) => panic!("no session record from the server within {timeout:?}"),
            }
        }
    }

    /// The next refused handshake: a failed login or a rejection (never a session end).
    pub fn next_refusal(&self, timeout: Duration) -> ServerEvent {
        let t0 = Instant::now();
        loop {
            let left = timeout.saturating_sub(t0.elapsed());
            match self.h().events().recv_timeout(left) {
                Ok(ev @ (ServerEvent::AuthFailed { .. } | ServerEvent::Rejected(_))) => return ev,
                Ok(ServerEvent::End(r)) => panic!("a refused handshake ended as a session: {r:?}"),
                Ok(_) => {}
                Err(_) => panic!("no refusal from the server within {timeout:?}"),
            }
        }
    }

    /// Waits until no session, thread or UDP port is left.
    pub fn assert_idle(&self) {
        let ok = wait_until(Duration::from_secs(5), || {
            let s = self.stats();
            s.active_sessions == 0 && s.live_threads == 0 && s.udp_ports_in_use == 0
        });
        assert!(ok, "server did not free everything: {:?}", self.stats());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let st = h.shutdown(Duration::from_secs(2));
            if !std::thread::panicking() {
                assert_eq!(st.live_threads, 0, "threads left after shutdown: {st:?}");
            }
        }
    }
}

pub fn server_cfg() -> ServerConfig {
    ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        udp_port_from: udp_base(),
        ..ServerConfig::default()
    }
}

pub fn start_server(cfg: ServerConfig) -> TestServer {
    let s = Server::bind(cfg).expect("bind");
    let addr = s.local_addrs()[0];
    let handle = s.spawn().expect("spawn");
    TestServer {
        handle: Some(handle),
        addr,
    }
}

pub fn client_cfg(
    addr: SocketAddr,
    protocol: Protocol,
    direction: Direction,
    secs: f64,
) -> ClientConfig {
    let mut c = ClientConfig::new(&addr.ip().to_string());
    c.port = addr.port();
    c.protocol = protocol;
    c.direction = direction;
    c.duration = Some(Duration::from_secs_f64(secs));
    c.connect_timeout = Duration::from_secs(5);
    c
}

/// Runs a client test; panics if it has not ended 15 s after its duration.
pub fn run_client(cfg: &ClientConfig) -> (btest::Result<ClientResult>, Vec<Sample>) {
    let stop = Stop::new();
    let (rx, h) = client::spawn(cfg.clone(), stop.clone()).expect("spawn client");
    let limit = cfg.duration.unwrap_or(Duration::from_secs(5)) + Duration::from_secs(15);
    let t0 = Instant::now();
    let mut samples = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => samples.push(s),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(_) => {}
        }
        if t0.elapsed() > limit {
            stop.trigger(btest::engine::StopReason::Shutdown);
            panic!("client did not finish within {limit:?}");
        }
    }
    (h.join().expect("client thread panicked"), samples)
}

/// Runs `f` on its own thread and fails the test if it takes longer than `secs`.
pub fn watchdog<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => h.join().unwrap(),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            // the body panicked: re-raise its panic
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(_) => panic!("watchdog: test still running after {secs} s"),
    }
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Relative difference of two counts.
pub fn rel_diff(a: u64, b: u64) -> f64 {
    let (a, b) = (a as f64, b as f64);
    if a.max(b) == 0.0 {
        return 0.0;
    }
    (a - b).abs() / a.max(b)
}

pub fn avg_bps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64()
}

/// How far a TCP receiver's count may fall short of what its sender wrote, beyond 10 %: what
/// was still queued when the connection closed. Under load the client's wait for the final
/// status (one status period) can run out; closing with unread data resets the connection,
/// and the kernel drops both queues: the sender's unsent data and the receiver's unread data.
/// Seen with 6 test threads at load 5.5 (issue 20): TCP both at 50 Mbit/s, 18,776,064 B sent,
/// 16,505,508 received (12 % short); and at unlimited rate under `stress -c 2` plus builds
/// (load 8-9): 18,284,544 sent, 12,994,706 received (5.3 MB short). Bounded per connection by
/// one second at the asked rate, and by the two queues' ceilings (`tcp_wmem` and `tcp_rmem`
/// maximum: 4 MiB + 32 MiB here); at an unlimited rate on loopback that leaves only the upper
/// bound and "data flowed" to this check, and exact counts to the tests that compare the
/// final status with what was sent (trust.rs).
pub fn tcp_close_slack(cfg: &ClientConfig, asked_bps: u64) -> u64 {
    if cfg.protocol != Protocol::Tcp {
        return 0;
    }
    let max_of = |path: &str, fallback: u64| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
            .unwrap_or(fallback)
    };
    let per_conn = max_of("/proc/sys/net/ipv4/tcp_wmem", 4 << 20)
        + max_of("/proc/sys/net/ipv4/tcp_rmem", 6 << 20);
    let queues = u64::from(cfg.connection_count.max(1)) * per_conn;
    match asked_bps {
        0 => queues,
        r => (r / 8).min(queues),
    }
}

/// `got` is within 10 % of `sent`, or short of it by at most `slack`.
fn counts_agree(sent: u64, got: u64, slack: u64) -> bool {
    rel_diff(sent, got) < 0.10 || (got < sent && sent - got <= slack)
}

/// Runs `cfg` against `srv` and checks the basics every data test shares: the test completed,
/// bytes flowed in the asked directions only, the client's view of each direction agrees with
/// what the server counted (within 10 %, or TCP's [`tcp_close_slack`] short), and statuses
/// went both ways (remote CPU seen).
pub fn check_flow(srv: &TestServer, cfg: &ClientConfig) -> (ClientResult, SessionRecord) {
    let (r, _samples) = run_client(cfg);
    let r = r.unwrap_or_else(|e| panic!("client failed: {e}"));
    assert!(
        r.succeeded(),
        "client ended with {:?}",
        r.summary.end_reason
    );
    let rec = srv.next_session(Duration::from_secs(5));
    let sum = rec
        .result
        .clone()
        .unwrap_or_else(|e| panic!("server session failed: {e}"));
    let c = r.summary.status.totals;
    let s = sum.status.totals;
    let what = format!(
        "{:?} {:?} conns {}",
        cfg.protocol, cfg.direction, cfg.connection_count
    );
    // statuses are the only bytes allowed against the direction: 12 per second at most
    let quiet = 12 * (cfg.duration.unwrap().as_secs() + 2);
    if cfg.direction.we_transmit(btest::wire::Side::Client) {
        assert!(
            c.tx_bytes > 100_000,
            "{what}: client sent only {} bytes",
            c.tx_bytes
        );
        assert!(
            counts_agree(
                c.tx_bytes,
                s.rx_bytes,
                tcp_close_slack(cfg, cfg.local_tx_speed)
            ),
            "{what}: client sent {} but server received {}",
            c.tx_bytes,
            s.rx_bytes
        );
    } else {
        assert_eq!(c.tx_bytes, 0, "{what}: client sent data");
        assert!(
            s.rx_bytes <= quiet,
            "{what}: server received {} bytes",
            s.rx_bytes
        );
    }
    if cfg.direction.we_receive(btest::wire::Side::Client) {
        assert!(
            c.rx_bytes > 100_000,
            "{what}: client received only {} bytes",
            c.rx_bytes
        );
        assert!(
            counts_agree(
                s.tx_bytes,
                c.rx_bytes,
                tcp_close_slack(cfg, u64::from(cfg.remote_tx_speed))
            ),
            "{what}: server sent {} but client received {}",
            s.tx_bytes,
            c.rx_bytes
        );
    } else {
        assert_eq!(s.tx_bytes, 0, "{what}: server sent data");
        assert!(
            c.rx_bytes <= quiet,
            "{what}: client received {} bytes",
            c.rx_bytes
        );
    }
    assert!(
        r.summary.status.statuses_received >= 1,
        "{what}: client saw no status"
    );
    assert!(
        r.summary.status.remote_cpu_avg.is_some(),
        "{what}: client saw no remote CPU"
    );
    assert!(
        sum.status.statuses_received >= 1,
        "{what}: server saw no status"
    );
    assert!(
        sum.status.remote_cpu_avg.is_some(),
        "{what}: server saw no remote CPU"
    );
    assert_eq!(
        r.connections,
        usize::from(cfg.connection_count.max(1)),
        "{what}"
    );
    assert_eq!(rec.start.connections, r.connections, "{what}");
    (r, rec)
}

pub const DIRECTIONS: [Direction; 3] = [Direction::ServerRx, Direction::ServerTx, Direction::Both];

/// Tests that saturate the CPU (unlimited TCP) and tests that measure rates take this lock,
/// so a rate check never runs beside a CPU hog on a 2-core machine.
pub fn exclusive() -> parking_lot::MutexGuard<'static, ()> {
    static LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    LOCK.lock()
}

/// A server on `listen` (e.g. `[::1]:0`), or `None` when this host cannot bind it (no IPv6).
pub fn try_server_on(listen: &str) -> Option<TestServer> {
    let mut cfg = server_cfg();
    cfg.listen = vec![listen.parse().unwrap()];
    let s = Server::bind(cfg).ok()?;
    let addr = s.local_addrs()[0];
    Some(TestServer {
        handle: Some(s.spawn().unwrap()),
        addr,
    })
}

/// The built binary.
pub fn btest_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_btest"))
}

/// Starts `btest server --listen 127.0.0.1:0 --udp-port-from <fresh range> EXTRA...` with
/// piped stdout/stderr; returns the child (killed on drop) and the address it logged.
pub fn spawn_server_bin(extra: &[&str]) -> (Proc, String) {
    spawn_server_bin_on("127.0.0.1:0", udp_base(), extra)
}

/// [`spawn_server_bin`] on `listen` with UDP ports from `udp_from`.
pub fn spawn_server_bin_on(listen: &str, udp_from: u16, extra: &[&str]) -> (Proc, String) {
    let (child, addr, _log) = spawn_server_bin_logged(listen, udp_from, extra);
    (child, addr)
}

/// [`spawn_server_bin_on`], also handing over the server's stderr lines after the
/// `listening on` one (stderr is drained whether or not they are read, so the server never
/// blocks on a full pipe).
pub fn spawn_server_bin_logged(
    listen: &str,
    udp_from: u16,
    extra: &[&str],
) -> (Proc, String, crossbeam_channel::Receiver<String>) {
    use std::io::BufRead;
    let base = udp_from.to_string();
    let mut child = Proc::new(
        btest_bin()
            .args(["server", "--listen", listen, "--udp-port-from", &base])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // With -v, log lines (the capacity, say) may come first.
    while !line.contains("listening on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server exited");
    }
    let addr = line.rsplit(' ').next().unwrap().trim().to_string();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, addr, rx)
}

/// NDJSON output, one value per line.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Sends `sig` ("-TERM", "-INT", ...) to `pid` with kill(1) and asserts it went. Its result
/// used to be ignored, so a `kill` that could not be started on a loaded machine would have
/// been a signal silently not sent, and a test waiting for the effect a hang on its watchdog.
pub fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
    assert!(
        st.as_ref().is_ok_and(|s| s.success()),
        "kill {sig} {pid}: {st:?}"
    );
}

/// What a process that did not react is doing, for a test's failure message: its state and
/// signal masks from /proc, each thread's name, state and kernel wait channel, and (when gdb
/// is installed) every thread's stack.
pub fn proc_state(pid: u32) -> String {
    let mut out = String::new();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for l in status.lines().filter(|l| {
        [
            "State", "SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt",
        ]
        .iter()
        .any(|k| l.starts_with(&format!("{k}:")))
    }) {
        out += &format!("{l}\n");
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            out += &format!(
                "  {} {} {} {}\n",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                state.unwrap_or("?"),
                read("wchan")
            );
        }
    }
    if let Ok(o) = std::process::Command::new("gdb")
        .args([
            "-batch",
            "-p",
            &pid.to_string(),
            "-ex",
            "thread apply all bt",
        ])
        .output()
    {
        out += &String::from_utf8_lossy(&o.stdout);
    }
    out
}

/// 50 Mbit/s asked in each direction gives 45-55 Mbit/s over 3 s, on both sides' counts.
pub fn speed_limit_50m(proto: Protocol) {
    let _x = exclusive();
    let srv = start_server(server_cfg());
    let mut c = client_cfg(srv.addr, proto, Direction::Both, 3.0);
    c.local_tx_speed = 50_000_000;
    c.remote_tx_speed = 50_000_000;
    let (r, rec) = check_flow(&srv, &c);
    let d = r.summary.duration;
    let tx = avg_bps(r.summary.status.totals.tx_bytes, d);
    let rx = avg_bps(r.summary.status.totals.rx_bytes, d);
    assert!((45e6..=55e6).contains(&tx), "{proto:?} tx {tx} bit/s");
    assert!((45e6..=55e6).contains(&rx), "{proto:?} rx {rx} bit/s");
    let s = rec.result.unwrap();
    let server_tx = avg_bps(s.status.totals.tx_bytes, s.duration);
    assert!(
        (45e6..=55e6).contains(&server_tx),
        "{proto:?} server tx {server_tx} bit/s"
    );
}

/// Asserts a finished btest process exited with `code`, showing its stderr if not.
pub fn assert_exit(o: &std::process::Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// True under CI (`CI` set to anything but empty, `0` or `false`; GitHub and .ci/run set
/// `CI=true`), where root and Chromium are expected to be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The one way a test skips for lack of root or Chromium (issue 20): it prints why, and under
/// CI it fails instead, because there a silent skip would hide that the test never ran.
/// Call it, then return from the test.
pub fn skip(why: &str) {
    assert!(
        !in_ci(),
        "{why}: CI must run this test (issue 20; unset CI to skip it locally)"
    );
    eprintln!("skipped: {why}");
}

/// Whether the tests run as root (network namespaces, cgroups, qdiscs).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The headless browser the report and dashboard tests open pages in, if one is installed.
/// Without one the caller's browser check is skipped through [`skip`] (so it fails under CI).
pub fn chromium() -> Option<String> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from);
    if found.is_none() {
        skip("the browser check needs chromium, chromium-browser or google-chrome");
    }
    found
}

/// Runs a setup command (ip, tc, nft) quietly; true when it succeeded.
pub fn run(args: &[&str]) -> bool {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no server
/// running (issue 20: a failed fleet test left two `btest server`s behind). Every test that
/// starts a btest process holds one of these; it derefs to the [`std::process::Child`].
pub struct Proc(Option<std::process::Child>);

impl Proc {
    pub fn new(child: std::process::Child) -> Proc {
        Proc(Some(child))
    }

    /// Waits for the process to exit and collects its output; the guard is spent, as
    /// [`std::process::Child::wait_with_output`] takes the child.
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        self.0.take().expect("child present").wait_with_output()
    }
}

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("child present")
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("child present")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // Already reaped (the test waited): kill fails harmlessly and wait returns the
            // stored status.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP connection from `from` (all of 127.0.0.0/8 is this host's on Linux, so one test can
/// be several sources), with a 10 s read timeout.
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    let local: SocketAddr = format!("{from}:0")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    s.bind(&local.into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}
