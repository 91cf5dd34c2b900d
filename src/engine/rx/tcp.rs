//! The TCP reader of one connection (`btest-rx-K`): counts data bytes; on connection 0 it also
//! picks the peer's statuses out of the stream (their bytes are not data) and reports EOF.
//!
//! Must not: allocate, lock or log per read.

use std::io::Read;
use std::net::TcpStream;

use crossbeam_channel::Sender;

use super::{peer_closed, peer_gone};
use crate::engine::counters::Counters;
use crate::engine::scan::StatusScanner;
use crate::engine::status::PeerMsg;
use crate::engine::stop::Stop;
use crate::error::Result;
use crate::net;
use crate::wire::status;

/// Read buffer for TCP data: large reads keep syscall count low at 10G+.
const TCP_READ: usize = 64 * 1024;

/// Reads a TCP data connection. `control` is set on connection 0: statuses found in the
/// stream are forwarded (and not counted as data) and EOF is reported to the status thread.
pub fn run(
    stop: &Stop,
    counters: &Counters,
    mut s: &TcpStream,
    control: Option<(StatusScanner, &Sender<PeerMsg>)>,
) -> Result<()> {
    let mut buf = vec![0u8; TCP_READ];
    let peer = s.peer_addr().ok();
    let (mut scanner, tx) = match control {
        Some((sc, tx)) => (Some(sc), Some(tx)),
        None => (None, None),
    };
    // Status bytes found but not yet taken off the data count (a status can straddle reads,
    // so the 12 bytes may be more than this read holds).
    let mut status_debt = 0u64;
    while !stop.is_triggered() {
        match s.read(&mut buf) {
            Ok(0) => {
                if let Some(tx) = tx {
                    peer_closed(stop, tx);
                }
                return Ok(());
            }
            Ok(n) => {
                let mut n = n as u64;
                if let (Some(sc), Some(tx)) = (scanner.as_mut(), tx) {
                    sc.feed(&buf[..n as usize], |st| {
                        status_debt += status::LEN as u64;
                        let _ = tx.try_send(PeerMsg::Status(st));
                    });
                    let paid = status_debt.min(n);
                    status_debt -= paid;
                    n -= paid;
                }
                if n > 0 {
                    counters.received(n);
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return peer_gone(stop, e, peer, scanner.is_some()),
        }
    }
    Ok(())
}
