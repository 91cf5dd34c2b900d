//! Parsing of one HTTP/1.1 request head (request line and header fields) out of a byte
//! buffer, for the `--http` server in mod.rs and `btest exporter` (src/exporter/http.rs, which
//! includes this file when the `http` feature is off).
//!
//! Owns: the grammar we accept (`GET`/`HEAD`, origin-form targets, HTTP/1.x, at most
//! [`MAX_HEADERS`] header fields, a head of at most [`MAX_HEAD`] bytes, no request body) and
//! the error each violation maps to. Must not: touch sockets or clocks, allocate more than the
//! request line's path and query and the Host value, panic on any input, or interpret header
//! values beyond the two that announce a body, `Host` (kept raw, judged by host.rs; issue
//! 18: DNS rebinding) and `X-Prometheus-Scrape-Timeout-Seconds` (kept raw for the exporter,
//! issue 22): a dashboard, a JSON API and a scrape need nothing else, and every header we do
//! not look at is one less parser to get wrong.
//!
//! The parser is strict where leniency is how request smuggling starts (bare CR, obsolete line
//! folding, whitespace before the colon, a body on a GET) and rejects rather than guesses.

use std::fmt;

/// Largest request head accepted, blank line included; a longer one is answered 431.
pub const MAX_HEAD: usize = 8192;
/// Most header fields accepted; more is answered 431 (the fields are too large in total).
pub const MAX_HEADERS: usize = 64;

/// The only methods served: everything the dashboard and the API need is a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the GET's headers, no body.
    Head,
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET or HEAD.
    pub method: Method,
    /// The target up to the first `?`, as sent: starts with `/`, printable ASCII, not
    /// percent-decoded (routes are compared as raw strings, so `/%61pi` is not `/api`).
    pub path: String,
    /// The target after the first `?` (without it), raw; empty when there was none.
    pub query: String,
    /// The `Host` field's value, trimmed, as sent (obs-text bytes lossily converted, which
    /// host.rs then refuses); `None` when there was none. At most one is accepted.
    pub host: Option<String>,
    /// The `x` of `HTTP/1.x`: a 1.1 (or later 1.x) request must carry a Host (RFC 9112 3.2).
    pub minor: u8,
    /// The `X-Prometheus-Scrape-Timeout-Seconds` value, trimmed, raw (issue 22: `btest
    /// exporter` shortens a probe to the scrape's timeout); `None` when absent or longer than
    /// 32 bytes (no number of seconds is). The `--http` server ignores it.
    pub scrape_timeout: Option<String>,
}

/// Why a head cannot be served; mod.rs maps each to a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields: 431.
    TooLarge,
    /// Malformed, or it carries a body: 400. The text is ours, never the client's bytes.
    Bad(&'static str),
    /// A well-formed method other than GET or HEAD: 405 with `Allow: GET, HEAD`.
    Method(String),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "request head too large"),
            HeadError::Bad(why) => write!(f, "bad request: {why}"),
            // Debug formatting escapes whatever the client put in the (token) name.
            HeadError::Method(m) => write!(f, "method {m:?} not allowed"),
        }
    }
}

/// Parses the head at the start of `buf`.
///
/// `Ok(None)`: no error so far but the head is not complete, read more. `Ok(Some((req, n)))`:
/// the head is the first `n` bytes (blank line included); anything after it is not ours to
/// read. Lines may end in `\r\n` or a bare `\n`. Errors are reported as soon as a complete line
/// shows them, so garbage is answered without waiting for a blank line that may never come.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut lines = Lines { buf, pos: 0 };

    // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line
    // (old clients sent a CRLF after a POST body). One is allowed, more is garbage: that bound
    // also bounds how often a trickling client can make us re-parse.
    let first = match lines.next()? {
        None => return Ok(None),
        Some(b"") => match lines.next()? {
            None => return Ok(None),
            Some(b"") => return Err(HeadError::Bad("empty request line")),
            Some(l) => l,
        },
        Some(l) => l,
    };
    let (method, path, query, minor) = request_line(first)?;

    let mut fields = 0usize;
    let mut host: Option<String> = None;
    let mut scrape_timeout: Option<String> = None;
    loop {
        let line = match lines.next()? {
            None => return Ok(None),
            Some(l) => l,
        };
        if line.is_empty() {
            let req = Request {
                method,
                path,
                query,
                host,
                minor,
                scrape_timeout,
            };
            return Ok(Some((req, lines.pos)));
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        match header_line(line)? {
            Some((Kept::Host, value)) => {
                // RFC 9112 3.2: more than one Host is answered 400 (which one would we judge?).
                if host.is_some() {
                    return Err(HeadError::Bad("more than one Host"));
                }
                host = Some(String::from_utf8_lossy(value).into_owned());
            }
            Some((Kept::ScrapeTimeout, value)) if value.len() <= 32 => {
                scrape_timeout = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
    }
}

/// Complete lines of the head, without their line end.
struct Lines<'a> {
    buf: &'a [u8],
    /// Offset just past the last line returned.
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next complete line; `None` when it is not complete yet (or TooLarge when it can no
    /// longer fit).
    fn next(&mut self) -> Result<Option<&'a [u8]>, HeadError> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // Incomplete: if the buffer already holds MAX_HEAD bytes, the finished head would
            // be longer than that, so there is no point reading on.
            return if self.buf.len() >= MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let end = self.pos + nl + 1;
        if end > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut line = &rest[..nl];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        // A CR anywhere else is a line end to some parsers and data to others: smuggling bait.
        if line.contains(&b'\r') {
            return Err(HeadError::Bad("bare CR"));
        }
        self.pos = end;
        Ok(Some(line))
    }
}

/// `METHOD SP TARGET SP HTTP/1.x`, exactly one space between the three parts; the `x` last.
fn request_line(line: &[u8]) -> Result<(Method, String, String, u8), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("request line is not METHOD TARGET VERSION"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::Bad("bad method"));
    }
    let Some(minor) = http1_minor(version) else {
        return Err(HeadError::Bad("not HTTP/1.x"));
    };
    // Methods are case-sensitive (RFC 9110 9.1): "get" is a method we do not allow.
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        // tchar is ASCII, so this is lossless.
        other => {
            return Err(HeadError::Method(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    };
    // Origin-form only: absolute-form is for proxies, and authority-form / "*" belong to
    // CONNECT / OPTIONS, which were refused above.
    if target.first() != Some(&b'/') {
        return Err(HeadError::Bad("target must start with /"));
    }
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HeadError::Bad("bad character in target"));
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    // Both are printable ASCII (checked above), so the conversion cannot lose anything.
    Ok((
        method,
        String::from_utf8_lossy(path).into_owned(),
        String::from_utf8_lossy(query).into_owned(),
        minor,
    ))
}

/// `HTTP/1.` and one digit (the minor version): 1.0 and 1.1 clients, and any later 1.x, speak
/// the same framing.
fn http1_minor(v: &[u8]) -> Option<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => Some(d - b'0'),
        _ => None,
    }
}

/// The header fields whose values the parser keeps.
enum Kept {
    Host,
    ScrapeTimeout,
}

/// `name: value`, checked for syntax; only the fields that would announce a body are read,
/// and the value of a `Host` or `X-Prometheus-Scrape-Timeout-Seconds` field is returned
/// (trimmed) for the caller to keep.
fn header_line(line: &[u8]) -> Result<Option<(Kept, &[u8])>, HeadError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HeadError::Bad("obsolete line folding"));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(HeadError::Bad("header without colon"));
    };
    let name = &line[..colon];
    // No whitespace between name and colon (RFC 9112 5.1): tchar excludes it.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::Bad("bad header name"));
    }
    let value = trim_ows(&line[colon + 1..]);
    if !value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
    {
        return Err(HeadError::Bad("bad header value"));
    }
    // We never read a body, so a request that has one is refused rather than left half-read:
    // its bytes would otherwise be the next "request" to any proxy in between.
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Err(HeadError::Bad("request body not accepted"));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Bad("bad content-length"));
        }
        // Compared digit by digit, so no length is too long to check.
        if value.iter().any(|&b| b != b'0') {
            return Err(HeadError::Bad("request body not accepted"));
        }
    }
    if name.eq_ignore_ascii_case(b"host") {
        return Ok(Some((Kept::Host, value)));
    }
    if name.eq_ignore_ascii_case(b"x-prometheus-scrape-timeout-seconds") {
        return Ok(Some((Kept::ScrapeTimeout, value)));
    }
    Ok(None)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// RFC 9110 5.6.2 token characters.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a case must parse to; Bad matches any reason (the texts are for people).
    #[derive(Debug)]
    enum Want {
        Ok(Method, &'static str, &'static str),
        More,
        TooLarge,
        Bad,
        Method(&'static str),
    }

    fn check(name: &str, input: &[u8], want: &Want) {
        let got = parse_head(input);
        let ok = match (want, &got) {
            (Want::Ok(m, p, q), Ok(Some((r, n)))) => {
                r.method == *m && r.path == *p && r.query == *q && *n == input.len()
            }
            (Want::More, Ok(None)) => true,
            (Want::TooLarge, Err(HeadError::TooLarge)) => true,
            (Want::Bad, Err(HeadError::Bad(_))) => true,
            (Want::Method(w), Err(HeadError::Method(g))) => w == g,
            _ => false,
        };
        assert!(ok, "case {name:?}: want {want:?}, got {got:?}");
    }

    #[test]
    fn scrape_timeout_is_kept_raw() {
        let (r, _) = parse_head(
            b"GET /probe?target=a HTTP/1.1\r\nHost: x\r\nx-prometheus-scrape-timeout-seconds:  9.5 \r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.scrape_timeout.as_deref(), Some("9.5"));
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: {}\r\n\r\n",
            "1".repeat(33)
        );
        let (r, _) = parse_head(long.as_bytes()).unwrap().unwrap();
        assert_eq!(r.scrape_timeout, None, "longer than 32 bytes: ignored");
    }

    #[test]
    fn table() {
        use Method::{Get, Head};
        let cases: &[(&str, &[u8], Want)] = &[
            // Accepted shapes.
            (
                "get crlf",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "get bare lf",
                b"GET /a HTTP/1.1\nHost: x\n\n",
                Want::Ok(Get, "/a", ""),
            ),
            (
                "mixed line ends",
                b"GET /a HTTP/1.1\r\nHost: x\n\r\n",
                Want::Ok(Get, "/a", ""),
            ),
            (
                "no headers",
                b"GET / HTTP/1.0\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "head",
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                Want::Ok(Head, "/metrics", ""),
            ),
            (
                "query",
                b"GET /api/x?a=1&b=2 HTTP/1.1\r\n\r\n",
                Want::Ok(Get, "/api/x", "a=1&b=2"),
            ),
            (
                "empty query",
                b"GET /x? HTTP/1.1\r\n\r\n",
                Want::Ok(Get, "/x", ""),
            ),
            (
                "second ? kept",
                b"GET /x?a?b HTTP/1.1\r\n\r\n",
                Want::Ok(Get, "/x", "a?b"),
            ),
            (
                "raw percent",
                b"GET /%61pi HTTP/1.1\r\n\r\n",
                Want::Ok(Get, "/%61pi", ""),
            ),
            (
                "http/1.9",
                b"GET / HTTP/1.9\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "one leading crlf",
                b"\r\nGET / HTTP/1.1\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "ows trimmed",
                b"GET / HTTP/1.1\r\nA:  \t v \t\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "empty value",
                b"GET / HTTP/1.1\r\nA:\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "obs-text value",
                b"GET / HTTP/1.1\r\nA: \xc3\xa9\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "content-length 0",
                b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            (
                "content-length 00",
                b"GET / HTTP/1.1\r\ncontent-length: 00\r\n\r\n",
                Want::Ok(Get, "/", ""),
            ),
            // Incomplete: read more.
            ("empty", b"", Want::More),
            ("partial line", b"GET / HT", Want::More),
            (
                "no blank line",
                b"GET / HTTP/1.1\r\nHost: x\r\n",
                Want::More,
            ),
            (
                "half line end",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r",
                Want::More,
            ),
            ("lone crlf", b"\r\n", Want::More),
            // Methods: well-formed but not served.
            ("post", b"POST / HTTP/1.1\r\n\r\n", Want::Method("POST")),
            ("post early", b"POST / HTTP/1.1\r\n", Want::Method("POST")),
            (
                "lower-case get",
                b"get / HTTP/1.1\r\n\r\n",
                Want::Method("get"),
            ),
            (
                "options star",
                b"OPTIONS * HTTP/1.1\r\n\r\n",
                Want::Method("OPTIONS"),
            ),
            (
                "post with body",
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                Want::Method("POST"),
            ),
            // Malformed.
            ("garbage", b"hello\r\n\r\n", Want::Bad),
            (
                "tls hello",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
                Want::Bad,
            ),
            ("two spaces", b"GET  / HTTP/1.1\r\n\r\n", Want::Bad),
            ("trailing space", b"GET / HTTP/1.1 \r\n\r\n", Want::Bad),
            ("tab separator", b"GET\t/ HTTP/1.1\r\n\r\n", Want::Bad),
            ("no version", b"GET /\r\n\r\n", Want::Bad),
            ("http/2", b"GET / HTTP/2.0\r\n\r\n", Want::Bad),
            ("http/1.10", b"GET / HTTP/1.10\r\n\r\n", Want::Bad),
            ("lower-case version", b"GET / http/1.1\r\n\r\n", Want::Bad),
            (
                "absolute form",
                b"GET http://h/ HTTP/1.1\r\n\r\n",
                Want::Bad,
            ),
            ("empty target", b"GET  HTTP/1.1\r\n\r\n", Want::Bad),
            ("nul in target", b"GET /\0 HTTP/1.1\r\n\r\n", Want::Bad),
            (
                "utf-8 in target",
                b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
                Want::Bad,
            ),
            (
                "two leading crlf",
                b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                Want::Bad,
            ),
            ("bare cr", b"GET / HTTP/1.1\rHost: x\r\n\r\n", Want::Bad),
            (
                "bare cr in header",
                b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
                Want::Bad,
            ),
            ("no colon", b"GET / HTTP/1.1\r\nHost\r\n\r\n", Want::Bad),
            ("no colon early", b"GET / HTTP/1.1\r\nHost\r\n", Want::Bad),
            (
                "space before colon",
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                Want::Bad,
            ),
            ("empty name", b"GET / HTTP/1.1\r\n: x\r\n\r\n", Want::Bad),
            (
                "folding",
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
                Want::Bad,
            ),
            (
                "ctl in value",
                b"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
                Want::Bad,
            ),
            (
                "nul in value",
                b"GET / HTTP/1.1\r\nA: \0\r\n\r\n",
                Want::Bad,
            ),
            (
                "del in value",
                b"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n",
                Want::Bad,
            ),
            (
                "body on get",
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
                Want::Bad,
            ),
            (
                "huge length",
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Want::Bad,
            ),
            (
                "bad length",
                b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                Want::Bad,
            ),
            (
                "signed length",
                b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                Want::Bad,
            ),
            (
                "empty length",
                b"HEAD / HTTP/1.1\r\nContent-Length:\r\n\r\n",
                Want::Bad,
            ),
            (
                "chunked",
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Want::Bad,
            ),
            (
                "te any case",
                b"HEAD / HTTP/1.1\r\ntransfer-ENCODING: gzip\r\n\r\n",
                Want::Bad,
            ),
            ("empty method", b" / HTTP/1.1\r\n\r\n", Want::Bad),
            ("bad method char", b"G(T / HTTP/1.1\r\n\r\n", Want::Bad),
            // Too large: an endless request line, a header line ending past MAX_HEAD.
            ("endless line", &[b'G'; MAX_HEAD], Want::TooLarge),
            ("line past max", &[b'a'; MAX_HEAD + 1], Want::TooLarge),
        ];
        for (name, input, want) in cases {
            check(name, input, want);
        }
    }

    #[test]
    fn host_and_version_are_kept() {
        let r = |input: &[u8]| parse_head(input).map(|o| o.map(|(r, _)| (r.host, r.minor)));
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nHost: a.example:80\r\n\r\n"),
            Ok(Some((Some("a.example:80".into()), 1)))
        );
        // Any case of the name, value trimmed.
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nhOST: \t[::1]:8 \r\n\r\n"),
            Ok(Some((Some("[::1]:8".into()), 1)))
        );
        assert_eq!(r(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some((None, 0))));
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            Ok(Some((Some(String::new()), 1)))
        );
        // Other fields whose names start alike are not Host.
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nHostx: a\r\nX-Host: b\r\n\r\n"),
            Ok(Some((None, 1)))
        );
        // Two are refused as soon as the second line is complete.
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n"),
            Err(HeadError::Bad("more than one Host"))
        );
    }

    #[test]
    fn head_length_excludes_what_follows() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (req, n) = parse_head(input).unwrap().unwrap();
        assert_eq!(req.path, "/a");
        assert_eq!(&input[n..], b"GET /b HTTP/1.1\r\n\r\n");
        let input = b"GET / HTTP/1.1\n\nrest";
        assert_eq!(parse_head(input).unwrap().unwrap().1, input.len() - 4);
    }

    #[test]
    fn size_limits() {
        // Exactly MAX_HEAD bytes is accepted, one more is not.
        let fill = |total: usize| {
            let mut h = b"GET / HTTP/1.1\r\nX: ".to_vec();
            h.resize(total - 4, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let at = fill(MAX_HEAD);
        assert_eq!(at.len(), MAX_HEAD);
        assert_eq!(parse_head(&at).unwrap().unwrap().1, MAX_HEAD);
        assert_eq!(parse_head(&fill(MAX_HEAD + 1)), Err(HeadError::TooLarge));
        assert_eq!(parse_head(&fill(9000)), Err(HeadError::TooLarge));

        // An incomplete head that already fills MAX_HEAD can only end up too large.
        let mut partial = b"GET / HTTP/1.1\r\nX: ".to_vec();
        partial.resize(MAX_HEAD - 1, b'a');
        assert_eq!(parse_head(&partial), Ok(None));
        partial.push(b'a');
        assert_eq!(parse_head(&partial), Err(HeadError::TooLarge));
        // Even with no line end at all (one endless request line).
        assert_eq!(parse_head(&[b'G'; MAX_HEAD]), Err(HeadError::TooLarge));

        // MAX_HEADERS fields are fine, one more is 431.
        let fields = |n: usize| {
            let mut h = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                h.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            h
        };
        assert!(parse_head(&fields(MAX_HEADERS)).unwrap().is_some());
        assert_eq!(
            parse_head(&fields(MAX_HEADERS + 1)),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn every_prefix_of_a_good_head_asks_for_more() {
        let input = b"GET /api/sessions?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        for n in 0..input.len() {
            assert_eq!(parse_head(&input[..n]), Ok(None), "prefix {n}");
        }
        assert!(parse_head(input).unwrap().is_some());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A small deterministic fuzz: xorshift bytes biased towards the head's syntax.
        let alphabet = b"GETHEAD /?:\r\n\t\0\x7f\xffaz09-HTTP/1.1";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 56)) as usize + i) % alphabet.len()])
                .collect();
            let _ = parse_head(&buf);
        }
    }

    #[test]
    fn display_escapes_the_method() {
        let e = HeadError::Method("X\"Y".into());
        assert_eq!(e.to_string(), "method \"X\\\"Y\" not allowed");
        assert_eq!(HeadError::TooLarge.to_string(), "request head too large");
    }
}
