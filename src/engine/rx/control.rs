//! The control reader of a UDP test (`btest-ctl-rx`): 12-byte statuses on connection 0, and
//! its EOF.
//!
//! Must not: read anything but whole statuses (a bad one ends the session as a protocol error).

use std::io::Read;
use std::net::TcpStream;

use crossbeam_channel::Sender;

use super::{peer_closed, peer_gone};
use crate::engine::status::PeerMsg;
use crate::engine::stop::Stop;
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::{status, Status};

/// Reads the 12-byte statuses of a UDP test from connection 0.
pub fn run(stop: &Stop, mut s: &TcpStream, tx: &Sender<PeerMsg>) -> Result<()> {
    let peer = s.peer_addr().ok();
    let mut b = [0u8; status::LEN];
    let mut have = 0;
    while !stop.is_triggered() {
        match s.read(&mut b[have..]) {
            Ok(0) => {
                peer_closed(stop, tx);
                return Ok(());
            }
            Ok(n) => {
                have += n;
                if have == status::LEN {
                    have = 0;
                    let st = Status::parse(&b).map_err(|e| Error::Protocol {
                        phase: Phase::Status,
                        addr: peer,
                        detail: format!("bad status message on the control connection: {e}"),
                    })?;
                    let _ = tx.try_send(PeerMsg::Status(st));
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return peer_gone(stop, e, peer, true),
        }
    }
    Ok(())
}
