//! The exporter's small blocking HTTP/1.1 listener: the accept thread `btest-exporter`, one
//! `btest-exp-conn` thread per connection, at most [`MAX_CONNECTIONS`] at once and
//! [`MAX_PER_SOURCE`] from one source (an IPv4 address or an IPv6 /64; more is answered 503
//! by the accept thread), the request head read under one deadline ([`HEAD_TIMEOUT`], slow
//! loris safe) and parsed by the `--http` server's strict parser (src/http/request.rs: 8 KiB
//! head, 64 fields, GET/HEAD only, no body), the answer written under [`WRITE_TIMEOUT`], one
//! request per connection.
//!
//! Must not: know about probes (the handler does), keep a connection alive, read a body, or
//! log per request above debug level. The handler runs on the connection thread and may take
//! as long as a probe's deadline: that is why the connection cap is larger than the test
//! concurrency (`--concurrency` is at most 16 of the 32), so `/metrics` and cached answers are
//! served while tests run.

use std::collections::HashMap;

use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::conn::{self, after, linger, write_by, HeadRead};
use super::request::{HeadError, Method, Request};
use crate::net::POLL_TIMEOUT;
use crate::sys::AsSock;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Connections one source may hold: half, so one Prometheus scraping many targets at once is
/// served while a second scraper (or a person with curl) still gets in.
pub const MAX_PER_SOURCE: usize = 16;
/// The whole request head must arrive within this, from accept.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole answer must be written within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// `Retry-After` seconds (503).
    pub retry_after: Option<u64>,
}

impl Response {
    /// Plain text.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            retry_after: None,
        }
    }

    /// Prometheus text format 0.0.4.
    pub fn metrics(body: String) -> Self {
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
            retry_after: None,
        }
    }
}

/// The request handler: the parsed head and the peer.
pub type Handler = Arc<dyn Fn(&Request, SocketAddr) -> Response + Send + Sync>;

/// Called by the accept thread about every 100 ms (the exporter's deadline watchdog).
pub type Tick = Box<dyn FnMut() + Send>;

/// A source, for the per-source count: an IPv4 address, or an IPv6 /64 (one host's
/// addresses).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Open connections overall and per source (an entry lives while its source has one open).
#[derive(Default)]
struct Open {
    total: usize,
    by: HashMap<IpAddr, usize>,
}

struct Shared {
    open: Mutex<Open>,
    quit: AtomicBool,
    handler: Handler,
}

/// A connection's slot, given back on drop on every path.
struct Slot(Arc<Shared>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.0.open.lock();
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                o.by.remove(&self.1);
            }
        }
    }
}

/// A running listener.
pub struct Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` and starts `btest-exporter`.
    pub fn start(addr: SocketAddr, handler: Handler, tick: Tick) -> Result<Listener, crate::Error> {
        let l = crate::net::listen(addr)?;
        let io = |e| crate::Error::io(crate::error::Phase::Bind, Some(addr), e);
        // Non-blocking, so an accept after a poll wake whose client already left returns
        // WouldBlock instead of waiting (and stalling a stop).
        l.set_nonblocking(true).map_err(io)?;
        let bound = l.local_addr().map_err(io)?;
        let shared = Arc::new(Shared {
            open: Mutex::new(Open::default()),
            quit: AtomicBool::new(false),
            handler,
        });
        let sh = shared.clone();
        let accept =
            crate::thread::spawn_named("btest-exporter", None, move || accept_loop(&sh, &l, tick))
                .map_err(io)?;
        Ok(Listener {
            addr: bound,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.open.lock().total
    }

    /// Stops accepting, then waits up to `wait` for the open connections to finish (the
    /// caller has stopped their tests first).
    pub fn stop(mut self, wait: Duration) {
        self.shared.quit.store(true, SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let end = Instant::now() + wait;
        while self.connections() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(sh: &Arc<Shared>, l: &TcpListener, mut tick: Tick) {
    let fd = l.raw_sock();
    while !sh.quit.load(SeqCst) {
        tick();
        if !crate::sys::wait_readable(fd, POLL_TIMEOUT) {
            continue;
        }
        let Ok((stream, peer)) = l.accept() else {
            continue;
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let src = source(peer.ip());
        let slot = {
            let mut o = sh.open.lock();
            let mine = o.by.get(&src).copied().unwrap_or(0);
            if o.total >= MAX_CONNECTIONS {
                Err("too many connections open; try again\n")
            } else if mine >= MAX_PER_SOURCE {
                Err("too many connections from your address; try again\n")
            } else {
                o.total += 1;
                *o.by.entry(src).or_insert(0) += 1;
                Ok(Slot(sh.clone(), src))
            }
        };
        match slot {
            Ok(slot) => {
                let sh2 = sh.clone();
                let r = crate::thread::spawn_named("btest-exp-conn", None, move || {
                    let _slot = slot;
                    serve(&sh2, stream, peer);
                });
                if let Err(e) = r {
                    log::warn!("exporter: cannot start a connection thread: {e}");
                }
            }
            Err(why) => {
                log::debug!("exporter: 503 to {peer}: {}", why.trim_end());
                let mut r = Response::text(503, why);
                r.retry_after = Some(1);
                let mut s = stream;
                let _ = write_by(
                    &mut s,
                    &render(&r, false),
                    after(Duration::from_millis(200)),
                );
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }
}

fn serve(sh: &Shared, mut stream: TcpStream, peer: SocketAddr) {
    let (resp, head_only) = match read_head(sh, &mut stream) {
        Ok(Some(req)) => {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (sh.handler)(&req, peer)))
                    .unwrap_or_else(|_| Response::text(500, "internal error\n"));
            (r, req.method == Method::Head)
        }
        Ok(None) => return,
        Err(r) => (r, false),
    };
    if write_by(&mut stream, &render(&resp, head_only), after(WRITE_TIMEOUT)).is_ok() {
        linger(&mut stream);
    }
}

/// The head, `Ok(None)` when the client left or sent nothing in time, `Err` an answer.
fn read_head(sh: &Shared, stream: &mut TcpStream) -> Result<Option<Request>, Response> {
    let deadline = after(HEAD_TIMEOUT);
    match conn::read_head(stream, deadline, || sh.quit.load(SeqCst)) {
        HeadRead::Request(req) => Ok(Some(req)),
        HeadRead::Close => Ok(None),
        HeadRead::Timeout => Err(Response::text(408, "request head timeout\n")),
        HeadRead::TooLarge => Err(Response::text(431, "request head too large\n")),
        HeadRead::Bad(HeadError::Method(_)) => Err(Response::text(405, "only GET and HEAD\n")),
        HeadRead::Bad(why) => Err(Response::text(400, format!("{why}\n"))),
    }
}

/// Status line, headers, body (unless HEAD), as one buffer.
pub fn render(r: &Response, head_only: bool) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if let Some(s) = r.retry_after {
        out.push_str(&format!("Retry-After: {s}\r\n"));
    }
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut b = out.into_bytes();
    if !head_only {
        b.extend_from_slice(r.body.as_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_v6_by_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ff::1".parse().unwrap();
        assert_eq!(source(a), source(b));
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source(m), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn answers_are_framed() {
        let mut r = Response::text(503, "busy\n");
        r.retry_after = Some(3);
        let t = String::from_utf8(render(&r, false)).unwrap();
        assert!(t.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{t}");
        assert!(t.contains("\r\nRetry-After: 3\r\n"), "{t}");
        assert!(t.contains("\r\nContent-Length: 5\r\n"), "{t}");
        assert!(t.ends_with("\r\n\r\nbusy\n"), "{t}");
        let h = String::from_utf8(render(&Response::metrics("x".into()), true)).unwrap();
        assert!(
            h.contains("version=0.0.4") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
    }
}
