//! The handshake of both roles as Sans-IO state machines (issue 20 item 2): hello, command,
//! the reply (OK, MD5 challenge, EC-SRP5 request, refusal), the MD5 and EC-SRP5 exchanges, the
//! session-join marker of multi-connection TCP and the UDP port reply.
//!
//! Owns: the order of the handshake messages, how many bytes each one takes (so a machine
//! buffers partial messages itself and never takes a byte past the message it needs: what
//! follows the handshake stays with the caller), and what each received message means.
//! Must not: touch sockets, read clocks, spawn threads, draw random numbers (the caller passes
//! the MD5 challenge and the EC-SRP5 scalars in) or log. The drivers (client.rs, with
//! authio.rs' reading of a close during the login, and server/handshake.rs) own timeouts,
//! deadlines, reads and writes, and map the machines' errors to `Error` kinds and texts.
//!
//! Why here and not in `wire/`: `wire/` must not allocate, and the EC-SRP5 half calls `auth/`,
//! which does; this module is the one place where `wire/` and `auth/` meet.
//!
//! The shape is ureq-proto's: a driver calls `poll`, which answers [`Step::Send`] (write these
//! bytes, then poll again), [`Step::Need`] (read exactly this many bytes and `feed` them; any
//! split of them works) or `Done` with the outcome; an error names its phase. The states are a
//! private enum, not one type per state: the byte stream is cut at any point, the drivers are
//! one loop each, and a type per state would make them match every transition (and grow the
//! router image with the monomorphised copies).
//!
//! ```text
//!  client state      bytes                                      server state
//!  ------------      -----                                      ------------
//!  Hello        <--  01 00 00 00 (hello)                   <--  (sent at once)
//!  (sends)      -->  16-byte command, or a join marker     -->  Command
//!                                                               marker: Done(Join(token))
//!                                                               login due: Policy::begin_login
//!  Reply        <--  01 00 00 00 | 01 t0 t1 00 (no login)  <--  Admit: Policy::admit
//!               <--  00 00 00 00 (refused)
//!               <--  02 00 00 00 challenge[16]             <--  (MD5 due)
//!  Md5Challenge -->  digest[16] user[32]                   -->  Md5Reply: Policy::md5_check;
//!                                                               wrong: 00 00 00 00, Err
//!               <--  03 00 00 00                           <--  (EC-SRP5 due)
//!  (sends MSG1) -->  len user 00 x_wa[32] parity           -->  EcMsg1: Policy::ec_verifier
//!  EcMsg2       <--  len x_wb[32] parity salt[16]          <--
//!  (sends MSG3) -->  len client proof[32]                  -->  EcMsg3: wrong: Err (no MSG4)
//!  EcMsg4       <--  len server proof[32]                  <--
//!  Verdict      <--  01 00 00 00 | 01 t0 t1 00 | 00 ..     <--  Admit: Policy::admit (no: Err)
//!  UdpPort      <--  port, u16 big-endian (UDP only)       <--  UdpPort: Policy::udp_port
//!  Done(Outcome)                                                Done(Session)
//!
//!  A join connection (Client::join): Hello, then the marker, Done; nothing comes back.
//! ```
//!
//! The refusals after a command have no message of their own: the server closes (the
//! protocol has none, docs/protocol.md); the machines say which and the drivers close.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(test, feature = "client", feature = "server"))]
mod tests;

#[cfg(feature = "client")]
pub use client::Client;
#[cfg(feature = "server")]
pub use server::Server;

use crate::error::Phase;

/// What a machine asks its driver to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a, T> {
    /// Write these bytes (all of them), then poll again.
    Send(&'a [u8], Phase),
    /// Read exactly this many bytes (at least one) and feed them, in any split.
    Need(usize, Phase),
    /// The handshake is over.
    Done(T),
}

/// The largest message either side receives: one EC-SRP5 frame (length byte and at most 255
/// bytes); the MD5 reply is 48, the command 16.
const MAX_MSG: usize = 256;

/// The message being received: a fixed length, or an EC-SRP5 frame (its first byte gives the
/// length of the rest). Never holds more than that message.
struct Inbox {
    buf: [u8; MAX_MSG],
    have: usize,
    need: usize,
    framed: bool,
    sized: bool,
    phase: Phase,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buf: [0; MAX_MSG],
            have: 0,
            need: 0,
            framed: false,
            sized: false,
            phase: Phase::Hello,
        }
    }

    /// Expects a message of `n` bytes (`n` <= [`MAX_MSG`]).
    fn expect(&mut self, n: usize, phase: Phase) {
        self.have = 0;
        self.need = n;
        self.framed = false;
        self.phase = phase;
    }

    /// Expects an EC-SRP5 frame.
    fn expect_frame(&mut self) {
        self.expect(1, Phase::Auth);
        self.framed = true;
        self.sized = false;
    }

    /// Bytes still missing from the message (0 when it is complete or none is expected).
    fn want(&self) -> usize {
        self.need - self.have
    }

    fn ready(&self) -> bool {
        self.need > 0 && self.have == self.need && (!self.framed || self.sized)
    }

    /// Takes what the message still lacks from `input`, up to [`Inbox::want`]; returns how
    /// many bytes it took. A frame's length byte is a want of its own, so the driver reads
    /// the frame in two reads, as the server writes it.
    fn feed(&mut self, input: &[u8]) -> usize {
        let n = self.want().min(input.len());
        copy(self.buf.iter_mut().skip(self.have), &input[..n]);
        self.have += n;
        if self.framed && !self.sized && self.have == 1 {
            self.sized = true;
            self.need = 1 + usize::from(self.buf[0]);
        }
        n
    }

    /// The complete message (an EC-SRP5 frame without its length byte); clears it.
    fn take(&mut self) -> &[u8] {
        let from = usize::from(self.framed);
        let to = self.have;
        self.need = 0;
        self.have = 0;
        self.buf.get(from..to).unwrap_or_default()
    }
}

/// The message to send, until the driver polls again.
struct Outbox {
    buf: [u8; MAX_MSG],
    len: usize,
    phase: Phase,
    /// Handed to the driver: cleared at the next poll.
    given: bool,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            buf: [0; MAX_MSG],
            len: 0,
            phase: Phase::Hello,
            given: false,
        }
    }

    fn put(&mut self, b: &[u8], phase: Phase) {
        self.len = copy(self.buf.iter_mut(), b);
        self.phase = phase;
        self.given = false;
    }

    /// Queues an EC-SRP5 frame: the length byte, then `payload` (at most 255 bytes).
    fn put_frame(&mut self, payload: &[u8]) {
        debug_assert!(payload.len() < MAX_MSG);
        self.buf[0] = payload.len() as u8;
        self.len = 1 + copy(self.buf.iter_mut().skip(1), payload);
        self.phase = Phase::Auth;
        self.given = false;
    }

    /// Forgets what the driver was given at the last poll (it has written it since).
    fn settle(&mut self) {
        if self.given {
            self.len = 0;
            self.given = false;
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Copies `from` into `to` as far as both go; returns how many bytes. Written so it cannot
/// panic: every panic site costs the router image a location record (issue 20 item 2 budget).
fn copy<'a>(to: impl Iterator<Item = &'a mut u8>, from: &[u8]) -> usize {
    let mut n = 0;
    for (d, s) in to.zip(from) {
        *d = *s;
        n += 1;
    }
    n
}

/// The drivers' copy of a message: what [`Step::Send`] gave (so the machine can be polled
/// again), or room for what [`Step::Need`] asks.
pub struct Buf([u8; MAX_MSG]);

impl Buf {
    /// An empty buffer.
    pub fn new() -> Self {
        Buf([0; MAX_MSG])
    }

    /// Keeps a copy of `b`; returns its length.
    pub fn keep(&mut self, b: &[u8]) -> usize {
        copy(self.0.iter_mut(), b)
    }

    /// The first `n` bytes (at most all of them).
    pub fn get(&mut self, n: usize) -> &mut [u8] {
        self.0.get_mut(..n).unwrap_or_default()
    }
}

impl Default for Buf {
    fn default() -> Self {
        Self::new()
    }
}
