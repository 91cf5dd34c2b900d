//! A small, bounded HTTP/1.1 server for the btest server's opt-in `--http ADDR:PORT`: the JSON
//! API, Prometheus `/metrics` and the dashboard page ([`DASHBOARD`]).
//!
//! Owns: the listener, the accept thread `btest-http`, one `btest-http-conn` thread per
//! connection, the limits (connection cap and each source's share of it, a whole-head
//! deadline, a write deadline), the Host check and the framing of responses. Request-head
//! parsing is in request.rs, the Host policy in host.rs, the per-source counts in share.rs
//! (all three pure). Must not: know about sessions,
//! routes or JSON (the btest server builds the [`Handler`]); keep a connection alive or read a
//! request body (one request per connection keeps every thread's life bounded by the limits);
//! block the accept loop on a client; log per request above debug level (anyone who can reach
//! the port could otherwise fill the log); panic on any input.
//!
//! Same shape as the btest listener (src/server/accept.rs): blocking sockets on dedicated
//! threads, the listener polled with a 100 ms timeout so a [`Stop`] is seen promptly.

pub mod conn;
pub mod host;
pub mod request;
mod share;

use crate::sys::AsSock;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conn::{after, linger, write_by, HeadRead, LINGER};
use host::{HostPolicy, Verdict};
use parking_lot::Mutex;
use request::HeadError;
pub use request::{Method, Request};
use share::{Full, Shares};

use crate::engine::Stop;
use crate::net::POLL_TIMEOUT;
use crate::server::limits::Source;

/// The dashboard: one self-contained page (inline CSS and JS, no external assets) that polls
/// the JSON API every second. Serve it with [`Response::html`].
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// Write timeout of the 503 sent from the accept thread: a fresh socket's send buffer is
/// empty, so this only bounds a pathological peer, and it must stay short because the accept
/// loop waits for it.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// join/Drop never wait longer than this for connection threads, whatever the limits say.
const MAX_JOIN_WAIT: Duration = Duration::from_secs(30);

/// One response. The server adds `Content-Length`, `Connection: close`, `Cache-Control:
/// no-store` and `X-Content-Type-Options: nosniff`; `headers` are extra ones (values are
/// sanitised, and names the server manages are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code; outside 100..=999 it is sent as 500.
    pub status: u16,
    /// `Content-Type`. For Prometheus, `text/plain; version=0.0.4; charset=utf-8`.
    pub content_type: &'static str,
    /// The body (not sent for HEAD, but still counted in `Content-Length`).
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// 200 with a JSON body.
    pub fn json(body: String) -> Self {
        Response {
            status: 200,
            content_type: "application/json",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// Plain UTF-8 text with any status.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// 200 with a static HTML page, under a Content-Security-Policy that lets the page run
    /// only its own inline script and style and talk only to this server: even if data ever
    /// reached the DOM as markup, it could not load or send anything elsewhere.
    pub fn html(body: &'static str) -> Self {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: vec![(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'"
                    .to_string(),
            )],
        }
    }

    /// 404.
    pub fn not_found() -> Self {
        Response::text(404, "not found\n")
    }
}

/// Builds the response to a request; called on a connection thread, so it must be quick and
/// must not block on anything a client controls. A panic becomes a 500.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Resource bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; one more is answered 503 by the accept thread. 0 answers
    /// every connection 503.
    pub max_connections: usize,
    /// Connections one source (an IPv4 address or an IPv6 /64, as for the btest listener)
    /// may hold of those at once; its next one is answered 503 while other sources are
    /// still served. Default 4 of 16: the dashboard's refresh fetches its four API routes
    /// at once (Promise.all in dashboard.html), so one browser needs 4, a Prometheus scrape
    /// 1; and with 4, one source holds at most a quarter of the slots, so 16 silent
    /// connections from one address (issue 18) no longer deny the API to everyone. A value
    /// at or above `max_connections` turns the share off; 0 answers every connection 503.
    pub max_per_source: usize,
    /// Deadline for the whole request head, from accept: a deadline rather than a per-read
    /// timeout, so a client trickling a byte at a time (slow loris) cannot hold a slot longer.
    pub head_timeout: Duration,
    /// Deadline for writing the whole response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            max_per_source: 4,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    /// Names (or IP literals) answered besides the listen address: `--http-host`.
    hosts: Vec<String>,
}

impl HttpServer {
    /// Binds (addr may be port 0). Errors name the address.
    pub fn bind(addr: SocketAddr) -> io::Result<HttpServer> {
        // crate::net owns socket creation (dual-stack `[::]`, SO_REUSEADDR); its error already
        // names the address, and the OS error's kind is kept for callers that match on it.
        let listener = crate::net::listen(addr).map_err(|e| match &e {
            crate::Error::Io { source, .. } => io::Error::new(source.kind(), e.to_string()),
            _ => io::Error::other(e.to_string()),
        })?;
        let named = |e: io::Error| io::Error::new(e.kind(), format!("http listener {addr}: {e}"));
        // Non-blocking, so an accept after a poll wake whose client already vanished returns
        // WouldBlock instead of waiting for the next client (and stalling a stop).
        listener.set_nonblocking(true).map_err(named)?;
        let addr = listener.local_addr().map_err(named)?;
        Ok(HttpServer {
            listener,
            addr,
            hosts: Vec::new(),
        })
    }

    /// Also answers requests whose Host is one of `names` (`--http-host`: DNS names or IP
    /// literals). Without it, only the listen address is answered (any IP literal when bound
    /// to 0.0.0.0 or `[::]`) and, when bound to loopback, `localhost` (host.rs says why).
    pub fn allow_hosts(mut self, names: &[String]) -> Self {
        self.hosts.extend_from_slice(names);
        self
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the accept thread `btest-http`; each connection is served on a thread named
    /// `btest-http-conn`. Everything stops when `stop` is triggered or the handle is dropped.
    pub fn spawn(self, handler: Handler, limits: Limits, stop: Stop) -> io::Result<HttpHandle> {
        let shared = Arc::new(Shared {
            handler,
            limits,
            hosts: HostPolicy::new(self.addr, &self.hosts),
            stop,
            quit: AtomicBool::new(false),
            shares: Mutex::new(Shares::new(limits.max_connections, limits.max_per_source)),
        });
        let sh = shared.clone();
        let listener = self.listener;
        let accept =
            crate::thread::spawn_named("btest-http", None, move || accept_loop(&sh, listener))?;
        Ok(HttpHandle {
            addr: self.addr,
            accept: Some(accept),
            shared,
        })
    }
}

/// A running server.
///
/// [`HttpHandle::join`] waits for the `Stop` given to `spawn`; dropping the handle without
/// joining shuts this server down on its own (without triggering that `Stop`) and waits a
/// bounded time for it.
pub struct HttpHandle {
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl HttpHandle {
    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the accept thread (it ends within ~100 ms of the stop being triggered, so
    /// call this after triggering it), then for the connection threads, for at most about
    /// head_timeout + write_timeout: a connection still reading its head leaves at the next
    /// 100 ms poll, one writing is bounded by write_timeout; only a handler that never returns
    /// could outlast the wait, and its thread is then left to finish alone.
    pub fn join(mut self) {
        self.finish(false);
    }

    /// Connections open now (each holds a slot until its thread is done with it).
    pub fn connections(&self) -> usize {
        self.shared.open()
    }

    fn finish(&mut self, quit: bool) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        if quit {
            self.shared.quit.store(true, SeqCst);
        }
        // The accept loop has no panicking path; if it ever did, there is nothing to add here.
        let _ = accept.join();
        // Connection threads are detached (a JoinHandle per request would need reaping while
        // serving); their slots tell when they are done.
        let l = &self.shared.limits;
        let wait = l
            .head_timeout
            .saturating_add(l.write_timeout)
            .saturating_add(LINGER + POLL_TIMEOUT)
            .min(MAX_JOIN_WAIT);
        let deadline = after(wait);
        while self.shared.open() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// What the accept thread, the connection threads and the handle share.
struct Shared {
    handler: Handler,
    limits: Limits,
    hosts: HostPolicy,
    stop: Stop,
    /// Set when the handle is dropped: stops this server without touching `stop`, which
    /// belongs to the whole btest server.
    quit: AtomicBool,
    /// Connections holding a slot (see [`Slot`]), overall and per source. Taken once per
    /// connection by the accept thread and once by its connection thread when it ends:
    /// never on a data path, held for a scan of at most `max_connections` entries.
    shares: Mutex<Shares>,
}

impl Shared {
    fn quitting(&self) -> bool {
        self.stop.is_triggered() || self.quit.load(SeqCst)
    }

    fn open(&self) -> usize {
        self.shares.lock().total()
    }
}

/// One of the `max_connections` slots, counted against its source's share; giving it back
/// is a Drop so that no path (an early return, a panic, a thread that failed to start and
/// dropped its closure) can leak it.
struct Slot(Arc<Shared>, Source);

impl Slot {
    fn take(shared: &Arc<Shared>, src: Source) -> Result<Slot, Full> {
        shared.shares.lock().take(src)?;
        Ok(Slot(shared.clone(), src))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.shares.lock().give(self.1);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let fd = listener.raw_sock();
    while !shared.quitting() {
        if !crate::sys::wait_readable(fd, POLL_TIMEOUT) {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning. Debug only: it repeats for
                // as long as the condition lasts.
                log::debug!("http accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // The listener is non-blocking; the connection must not be (Linux does not pass the
        // flag on, but that is not ours to rely on).
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let slot = match Slot::take(shared, Source::of(peer.ip())) {
            Ok(slot) => slot,
            Err(Full::All) => {
                busy(stream, "busy, retry\n");
                continue;
            }
            Err(Full::Source) => {
                // Per request, so debug only (see the module doc).
                log::debug!("http: {peer}: over its share of connections, 503");
                busy(stream, "too many connections from your address, retry\n");
                continue;
            }
        };
        let sh = shared.clone();
        let spawned = crate::thread::spawn_named("btest-http-conn", None, move || {
            let _slot = slot;
            serve(&sh, stream);
        });
        if let Err(e) = spawned {
            // The closure was dropped with the slot and the stream in it: slot given back,
            // connection closed.
            log::debug!("http: cannot start a connection thread: {e}");
        }
    }
}

/// Over the cap or the source's share: a 503 written from the accept thread, so it must not
/// wait on the client.
fn busy(mut stream: TcpStream, why: &'static str) {
    let mut r = Response::text(503, why);
    r.headers.push(("Retry-After", "1".into()));
    let bytes = render(&r, false);
    if write_by(&mut stream, &bytes, after(BUSY_WRITE_TIMEOUT)).is_err() {
        return;
    }
    close_now(&mut stream);
}

/// FIN, and discard what already arrived without waiting for more, so that the close is
/// orderly rather than a RST (which could destroy a 503 before the client reads it; see
/// LINGER). For the paths that must not wait: the accept thread, a stop.
fn close_now(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut chunk = [0u8; 2048];
        for _ in 0..4 {
            if !matches!(stream.read(&mut chunk), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// What reading the head came to.
enum Head {
    Request(Request),
    /// An error to answer with.
    Reply(Response),
    /// Nothing to answer: the client left, sent nothing in time, or we are stopping.
    Close,
}

/// Serves the one request of a connection.
fn serve(sh: &Shared, mut stream: TcpStream) {
    let (resp, head_only) = match read_head(sh, &mut stream) {
        // The Host is judged before any route: a refused request learns nothing else.
        Head::Request(req) => match sh.hosts.check(req.host.as_deref(), req.minor) {
            Verdict::Allowed => {
                let resp = match catch_unwind(AssertUnwindSafe(|| (sh.handler)(&req))) {
                    Ok(r) => r,
                    Err(_) => {
                        log::debug!("http handler panicked on {:?}", crate::text::Esc(&req.path));
                        Response::text(500, "internal error\n")
                    }
                };
                (resp, req.method == Method::Head)
            }
            refused => (host_refused(refused, &req), false),
        },
        Head::Reply(resp) => (resp, false),
        Head::Close => {
            close_now(&mut stream);
            return;
        }
    };
    let bytes = render(&resp, head_only);
    if write_by(&mut stream, &bytes, after(sh.limits.write_timeout)).is_ok() {
        linger(&mut stream);
    }
}

fn read_head(sh: &Shared, stream: &mut TcpStream) -> Head {
    match conn::read_head(stream, after(sh.limits.head_timeout), || sh.quitting()) {
        HeadRead::Request(req) => Head::Request(req),
        HeadRead::Close => Head::Close,
        HeadRead::Timeout => Head::Reply(Response::text(408, "request head timeout\n")),
        HeadRead::TooLarge => Head::Reply(too_large()),
        HeadRead::Bad(HeadError::Method(_)) => {
            let mut r = Response::text(405, "only GET and HEAD\n");
            r.headers.push(("Allow", "GET, HEAD".into()));
            Head::Reply(r)
        }
        HeadRead::Bad(why) => {
            log::debug!("http: {why}");
            Head::Reply(Response::text(400, format!("{why}\n")))
        }
    }
}

/// The answer to a request whose Host this listener does not serve (host.rs).
///
/// 421 Misdirected Request rather than 403: RFC 9110 15.5.20 defines 421 for a request sent
/// to a server that will not answer for its target's authority, which is exactly a Host we
/// do not serve; it says "wrong name for this server", not "you may not", and tells a client
/// that reached us under an unlisted name (or an operator reading its log) what to fix.
/// The value is echoed only through `host::shown`, which escapes all but `[A-Za-z0-9-._:[]]`.
fn host_refused(v: Verdict, req: &Request) -> Response {
    match v {
        Verdict::Missing => Response::text(400, "bad request: HTTP/1.1 without Host\n"),
        Verdict::Malformed => Response::text(400, "bad request: malformed Host\n"),
        Verdict::Allowed | Verdict::Misdirected => {
            let host = host::shown(req.host.as_deref().unwrap_or(""));
            log::debug!("http: Host {host:?} is not served here, 421");
            Response::text(
                421,
                format!(
                    "misdirected request: this server does not answer for host '{host}'; \
                     its operator can allow a name with --http-host\n"
                ),
            )
        }
    }
}

fn too_large() -> Response {
    Response::text(431, "request head too large\n")
}

/// Status line, headers and (unless `head_only`) body, in one buffer: one write for the
/// small responses this server sends.
fn render(r: &Response, head_only: bool) -> Vec<u8> {
    let status = if (100..=999).contains(&r.status) {
        r.status
    } else {
        500
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        reason(status),
        clean(r.content_type),
        r.body.len()
    );
    for (name, value) in &r.headers {
        // The framing headers are ours alone: a second Content-Length or a Transfer-Encoding
        // would let the body be read two ways.
        const OURS: &[&str] = &[
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "cache-control",
            "x-content-type-options",
        ];
        let ok_name = !name.is_empty() && name.bytes().all(request::is_tchar);
        if !ok_name || OURS.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&clean(value));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    bytes
}

/// A header value with control characters (CR and LF above all: header injection) replaced
/// by spaces.
fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        // The reason phrase is optional (RFC 9112 4); the code is what clients act on.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::sync::Mutex;

    /// The server tests run one at a time: the thread-name test counts `btest-http` threads
    /// process-wide, and timing assertions are steadier without a dozen servers at once.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dummy() -> Handler {
        Arc::new(|r: &Request| match r.path.as_str() {
            "/" => {
                let mut resp = Response::json(format!(
                    "{{\"path\":\"{}\",\"query\":\"{}\"}}",
                    r.path, r.query
                ));
                resp.headers.push(("X-Test", "yes".into()));
                resp
            }
            "/panic" => panic!("handler panic (expected by the test)"),
            "/comm" => Response::text(
                200,
                std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default(),
            ),
            _ => Response::not_found(),
        })
    }

    fn start(limits: Limits) -> (HttpHandle, Stop) {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stop = Stop::new();
        let h = server.spawn(dummy(), limits, stop.clone()).unwrap();
        (h, stop)
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Reads until EOF; a reset after some data still counts as the end (see LINGER).
    fn read_all(s: &mut TcpStream) -> Vec<u8> {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if !out.is_empty() => {
                    assert_ne!(e.kind(), io::ErrorKind::WouldBlock, "read timed out");
                    return out;
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    /// One request on a new connection. It first waits until the server holds fewer than a
    /// source's share of connections: an answered connection keeps its slot while the server
    /// lingers for the client's close (LINGER), and on a busy machine the previous few
    /// requests of the same test can still be lingering, which answered 503 instead of the
    /// status under test (seen 3 runs of 5 under `stress -c 2`, issue 20). Tests that hold
    /// connections on purpose hold fewer than the share.
    fn exchange(h: &HttpHandle, raw: &[u8]) -> Reply {
        let share = Limits::default().max_per_source;
        wait_for("a free slot", Duration::from_secs(10), || {
            h.connections() < share
        });
        let mut s = TcpStream::connect(h.local_addr()).unwrap();
        s.write_all(raw).unwrap();
        parse(&read_all(&mut s))
    }

    fn get(h: &HttpHandle, path: &str) -> Reply {
        exchange(
            h,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
    }

    fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn get_returns_body_and_headers() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        let r = get(&h, "/?a=1&b=%20");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"path":"/","query":"a=1&b=%20"}"#);
        assert_eq!(r.header("Content-Length"), Some(&*r.body.len().to_string()));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(r.header("X-Test"), Some("yes"));
        let r = get(&h, "/nope");
        assert_eq!(r.status, 404);
        // Bare-LF line ends, as some hand-typed clients send them.
        let r = exchange(&h, b"GET / HTTP/1.0\n\n");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn head_has_content_length_but_no_body() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        let full = get(&h, "/");
        let r = exchange(&h, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("Content-Length"),
            Some(&*full.body.len().to_string())
        );
        assert!(!full.body.is_empty());
    }

    #[test]
    fn post_is_405_with_allow() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"DELETE /api/sessions HTTP/1.1\r\n\r\n",
        ] {
            let r = exchange(&h, raw);
            assert_eq!(r.status, 405);
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        }
    }

    #[test]
    fn garbage_is_400() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        for raw in [
            &b"hello\r\n\r\n"[..],
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
            b"GET http://example.com/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            let r = exchange(&h, raw);
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(r.header("Connection"), Some("close"));
        }
    }

    #[test]
    fn oversized_head_is_431() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        raw.resize(9000 - 4, b'a');
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(raw.len(), 9000);
        let r = exchange(&h, &raw);
        assert_eq!(r.status, 431);
        // 65 header fields, each small.
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(exchange(&h, &raw).status, 431);
    }

    #[test]
    fn slow_loris_is_cut_at_the_deadline_without_blocking_others() {
        let _g = serial();
        let head_timeout = Duration::from_millis(300);
        let (h, _stop) = start(Limits {
            head_timeout,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let mut loris = TcpStream::connect(h.local_addr()).unwrap();
        loris.write_all(b"G").unwrap();
        let mut silent = TcpStream::connect(h.local_addr()).unwrap();
        wait_for("both connections", Duration::from_secs(1), || {
            h.connections() == 2
        });

        // A normal request in parallel is served at once, not after the stalled ones.
        let t1 = Instant::now();
        assert_eq!(get(&h, "/").status, 200);
        assert!(t1.elapsed() < head_timeout, "took {:?}", t1.elapsed());

        // The one that started a request is told 408 at the deadline...
        let r = parse(&read_all(&mut loris));
        let took = t0.elapsed();
        assert_eq!(r.status, 408);
        assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
        assert!(took < Duration::from_millis(1500), "closed late: {took:?}");
        // ...the one that sent nothing is just closed.
        assert!(read_all(&mut silent).is_empty());
        assert!(t0.elapsed() < Duration::from_millis(1500));
        wait_for("slots back", Duration::from_secs(1), || {
            h.connections() == 0
        });
    }

    #[test]
    fn over_max_connections_gets_503_at_once() {
        let _g = serial();
        let (h, _stop) = start(Limits {
            max_connections: 2,
            head_timeout: Duration::from_secs(3),
            ..Limits::default()
        });
        let mut a = TcpStream::connect(h.local_addr()).unwrap();
        a.write_all(b"GET / HT").unwrap();
        let b = TcpStream::connect(h.local_addr()).unwrap();
        wait_for("two stalled clients", Duration::from_secs(1), || {
            h.connections() == 2
        });

        let t = Instant::now();
        let r = get(&h, "/");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(h.connections(), 2);

        // Once the stalled clients leave, their slots serve again.
        a.write_all(b"TP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        assert_eq!(parse(&read_all(&mut a)).status, 200);
        drop(b);
        wait_for("slots back", Duration::from_secs(1), || {
            h.connections() == 0
        });
        assert_eq!(get(&h, "/").status, 200);
    }

    /// A client socket bound to `from` (any of 127.0.0.0/8 is local on Linux), so one test
    /// can be several sources.
    fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let local: SocketAddr = format!("{from}:0").parse().unwrap();
        s.bind(&local.into()).unwrap();
        s.connect(&to.into()).unwrap();
        s.into()
    }

    #[test]
    fn one_source_gets_only_its_share() {
        let _g = serial();
        let (h, _stop) = start(Limits {
            max_connections: 4,
            max_per_source: 2,
            ..Limits::default()
        });
        let addr = h.local_addr();
        let _silent: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.1", addr)).collect();
        wait_for("two silent clients", Duration::from_secs(1), || {
            h.connections() == 2
        });
        // The same source again: 503 at once, with its own reason.
        let mut s = connect_from("127.0.0.1", addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let r = parse(&read_all(&mut s));
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert!(String::from_utf8_lossy(&r.body).contains("your address"));
        // Another source is served while the first holds its share.
        let mut s = connect_from("127.0.0.2", addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        assert_eq!(parse(&read_all(&mut s)).status, 200);
        // Two more sources fill the cap; then the global 503.
        let _more: Vec<TcpStream> = ["127.0.0.3", "127.0.0.4"]
            .iter()
            .map(|a| connect_from(a, addr))
            .collect();
        wait_for("four slots taken", Duration::from_secs(1), || {
            h.connections() == 4
        });
        let mut s = connect_from("127.0.0.5", addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let r = parse(&read_all(&mut s));
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"busy, retry\n");
    }

    #[test]
    fn host_is_checked_before_any_route() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        let addr = h.local_addr();
        let req = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        for ok in [
            format!("{addr}"),
            "127.0.0.1".into(),
            "localhost".into(),
            format!("localhost:{}", addr.port()),
        ] {
            assert_eq!(exchange(&h, req(&ok).as_bytes()).status, 200, "{ok}");
        }
        // DNS rebinding: the attacker's name, our port.
        let r = exchange(
            &h,
            req(&format!("attacker.example:{}", addr.port())).as_bytes(),
        );
        assert_eq!(r.status, 421);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains(&format!("'attacker.example:{}'", addr.port())),
            "{body}"
        );
        assert!(!body.contains("\"path\""), "the route ran: {body}");
        // Even a route that does not exist says 421, not 404.
        let r = exchange(&h, b"GET /nope HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        assert_eq!(r.status, 421);
        // No Host on 1.1, two of them, or one that is no host: 400. HTTP/1.0 needs none.
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\xc3\xa9\r\n\r\n",
        ] {
            let r = exchange(&h, raw);
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
            assert!(!String::from_utf8_lossy(&r.body).contains('<'));
        }
        assert_eq!(exchange(&h, b"GET / HTTP/1.0\r\n\r\n").status, 200);
        assert_eq!(
            exchange(&h, b"GET / HTTP/1.0\r\nHost: evil.example\r\n\r\n").status,
            421
        );
    }

    #[test]
    fn allowed_hosts_are_served() {
        let _g = serial();
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .allow_hosts(&["Evil.Example".into()]);
        let h = server
            .spawn(dummy(), Limits::default(), Stop::new())
            .unwrap();
        let r = exchange(&h, b"GET / HTTP/1.1\r\nHost: evil.example:80\r\n\r\n");
        assert_eq!(r.status, 200);
        let r = exchange(&h, b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n");
        assert_eq!(r.status, 421);
    }

    #[test]
    fn handler_panic_is_500_and_server_keeps_serving() {
        let _g = serial();
        let (h, _stop) = start(Limits::default());
        let r = get(&h, "/panic");
        assert_eq!(r.status, 500);
        assert_eq!(r.header("Content-Length"), Some(&*r.body.len().to_string()));
        assert_eq!(get(&h, "/").status, 200);
        wait_for("slots back", Duration::from_secs(1), || {
            h.connections() == 0
        });
    }

    #[test]
    fn stop_ends_accept_thread_and_join_is_prompt() {
        let _g = serial();
        // Default (5 s) timeouts: a prompt join must not depend on them.
        let (h, stop) = start(Limits::default());
        let addr = h.local_addr();
        assert_eq!(get(&h, "/").status, 200);
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(b"GET /").unwrap();
        wait_for("stalled client", Duration::from_secs(1), || {
            h.connections() == 1
        });

        let t = Instant::now();
        stop.trigger(crate::engine::StopReason::Shutdown);
        wait_for("connections to end", Duration::from_secs(1), || {
            h.connections() == 0
        });
        h.join();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        // The stalled client was closed without an answer (a FIN; a RST would do too, had
        // its bytes arrived only after the close), and the listener is gone.
        stalled
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match stalled.read(&mut [0u8; 64]) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("stalled client: {other:?}"),
        }
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn drop_without_stop_shuts_down() {
        let _g = serial();
        let (h, stop) = start(Limits::default());
        let addr = h.local_addr();
        let t = Instant::now();
        drop(h);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        assert!(!stop.is_triggered(), "the btest server's Stop is not ours");
        assert!(TcpStream::connect(addr).is_err());
    }

    /// Thread ids of the threads named exactly `btest-http`.
    fn accept_threads() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "btest-http" {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    #[test]
    fn threads_are_named() {
        let _g = serial();
        let before = accept_threads();
        let (h, stop) = start(Limits::default());
        // The name is set by the new thread itself, so it may take a moment to show.
        let mut ours = BTreeSet::new();
        wait_for("a btest-http thread", Duration::from_secs(1), || {
            ours = accept_threads().difference(&before).cloned().collect();
            !ours.is_empty()
        });
        let r = get(&h, "/comm");
        assert_eq!(
            String::from_utf8_lossy(&r.body).trim_end(),
            "btest-http-conn"
        );

        stop.trigger(crate::engine::StopReason::Shutdown);
        h.join();
        // A joined thread can linger in /proc for an instant after its join returns.
        wait_for(
            "the btest-http thread to go",
            Duration::from_secs(1),
            || accept_threads().is_disjoint(&ours),
        );
    }

    #[test]
    fn response_headers_cannot_be_injected_or_override_framing() {
        let mut r = Response::text(200, "x");
        r.headers.push(("X-A", "1\r\nSet-Cookie: evil=1".into()));
        r.headers.push(("Content-Length", "999".into()));
        r.headers.push(("Bad Name", "v".into()));
        let raw = render(&r, false);
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("X-A: 1  Set-Cookie: evil=1\r\n"), "{text}");
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(!text.contains("Bad Name"));
        assert!(text.ends_with("\r\n\r\nx"));
        // Odd statuses never make a malformed status line.
        let raw = render(&Response::text(42, ""), true);
        assert!(raw.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        let raw = render(&Response::text(299, "abc"), true);
        assert!(raw.starts_with(b"HTTP/1.1 299 \r\n"));
        assert!(raw.ends_with(b"Content-Length: 3\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn dashboard_is_self_contained() {
        assert!(DASHBOARD.len() < 16 * 1024, "{} bytes", DASHBOARD.len());
        assert!(DASHBOARD.starts_with("<!doctype html>"));
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!DASHBOARD.contains(banned), "uses {banned}");
        }
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!DASHBOARD.contains(external), "loads {external}");
        }
        for api in [
            "/api/summary",
            "/api/sessions",
            "/api/quotas",
            "/api/history",
        ] {
            assert!(DASHBOARD.contains(api), "does not poll {api}");
        }
        assert!(DASHBOARD.contains("id=\"error\""));
        assert!(DASHBOARD.contains("dataset.updated"));
        let r = Response::html(DASHBOARD);
        assert_eq!(r.content_type, "text/html; charset=utf-8");
        assert_eq!(r.body, DASHBOARD.as_bytes());
    }
}
