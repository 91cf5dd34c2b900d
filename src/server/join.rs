//! The join registry: a multi-connection TCP session waits here for its data connections.
//!
//! The session's control connection gets a random 2-byte token (never `00 00`, which marks
//! no session) and registers a bounded channel under it; a data connection presenting the
//! token from the same address is sent down that channel (docs/protocol.md 7.2).
//!
//! Must not: read or write connections, or wait (the session thread does the waiting).
//! Generic over what is passed, so it is tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::wire::command::Token;

struct Pending<T> {
    peer_ip: IpAddr,
    sender: Sender<T>,
}

/// Why a data connection was not joined (it is handed back).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No session has the token.
    Unknown,
    /// The token belongs to a session of another address.
    OtherAddress,
    /// The session has all the connections it asked for.
    Full,
}

pub struct Joins<T> {
    pending: Mutex<HashMap<Token, Pending<T>>>,
}

impl<T> Default for Joins<T> {
    fn default() -> Self {
        Joins {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Joins<T> {
    /// A new token for a session of `peer_ip` that waits for `room` data connections.
    pub fn register(&self, peer_ip: IpAddr, room: usize) -> (Token, Receiver<T>) {
        let (sender, rx) = crossbeam_channel::bounded(room);
        let mut p = self.pending.lock();
        loop {
            let mut t = [0u8; 2];
            crate::sys::random_bytes(&mut t);
            if t == [0, 0] || p.contains_key(&t) {
                continue;
            }
            p.insert(t, Pending { peer_ip, sender });
            return (t, rx);
        }
    }

    /// The session stopped waiting.
    pub fn unregister(&self, token: Token) {
        self.pending.lock().remove(&token);
    }

    /// Hands `conn` from `peer_ip` to the session that has `token`.
    pub fn route(&self, token: Token, peer_ip: IpAddr, conn: T) -> Result<(), (Refused, T)> {
        let p = self.pending.lock();
        match p.get(&token) {
            Some(j) if j.peer_ip == peer_ip => j
                .sender
                .try_send(conn)
                .map_err(|e| (Refused::Full, e.into_inner())),
            Some(_) => Err((Refused::OtherAddress, conn)),
            None => Err((Refused::Unknown, conn)),
        }
    }

    /// Sessions waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn routes_by_token_and_address_within_room() {
        let j: Joins<u32> = Joins::default();
        let (t1, rx1) = j.register(A, 2);
        let (t2, rx2) = j.register(B, 1);
        assert_ne!(t1, t2);
        assert_ne!(t1, [0, 0]);
        assert_eq!(j.route(t1, A, 1), Ok(()));
        assert_eq!(j.route(t1, A, 2), Ok(()));
        assert_eq!(j.route(t1, A, 3), Err((Refused::Full, 3)));
        assert_eq!(j.route(t1, B, 4), Err((Refused::OtherAddress, 4)));
        assert_eq!(j.route(t2, B, 5), Ok(()));
        assert_eq!(rx1.try_iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rx2.try_iter().collect::<Vec<_>>(), [5]);
        j.unregister(t1);
        assert_eq!(j.route(t1, A, 6), Err((Refused::Unknown, 6)));
        assert_eq!(j.len(), 1);
    }

    #[test]
    fn tokens_stay_unique_while_registered() {
        let j: Joins<()> = Joins::default();
        let mut seen = std::collections::HashSet::new();
        let keep: Vec<_> = (0..2000).map(|_| j.register(A, 1)).collect();
        for (t, _) in &keep {
            assert!(seen.insert(*t), "token {t:?} handed out twice");
        }
        assert_eq!(j.len(), 2000);
    }
}
