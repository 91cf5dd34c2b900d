//! The 12-byte status message both sides send once a second on connection 0.
//!
//! ```text
//! off size field
//!  0   1   0x07 message type
//!  1   1   CPU load of the sender: 0x80 | percent; 0x00 = no CPU info (older RouterOS);
//!          RouterOS 7.23.1 servers send the percent without 0x80 (read as the percent)
//!  2   2   reserved: sent as 00 00, ignored on receipt
//!  4   4   sequence, u32 LE, 1 for the first status
//!  8   4   bytes received by the sender during the last interval, u32 LE, saturating
//! ```

use super::{WireError, WireErrorKind};

/// Length of a status message.
pub const LEN: usize = 12;
/// First byte of a status message.
pub const TYPE: u8 = 0x07;
/// Bit 7 of byte 1 says the low 7 bits carry a CPU percentage.
pub const CPU_VALID: u8 = 0x80;

/// A status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CPU load of the sender in percent (0..=100), if it reported one.
    pub cpu: Option<u8>,
    /// Sequence number.
    pub seq: u32,
    /// Bytes the sender received during its last interval.
    pub bytes_received: u32,
}

impl Status {
    /// Builds a status; `bytes_received` saturates at `u32::MAX` and `cpu` at 100.
    pub fn new(cpu: u8, seq: u32, bytes_received: u64) -> Self {
        Status {
            cpu: Some(cpu.min(100)),
            seq,
            bytes_received: u32::try_from(bytes_received).unwrap_or(u32::MAX),
        }
    }

    /// Encodes the status.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = TYPE;
        b[1] = match self.cpu {
            Some(c) => CPU_VALID | c.min(100),
            None => 0,
        };
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.bytes_received.to_le_bytes());
        b
    }

    /// Parses a status. Reserved bytes are ignored; a CPU value above 100 is capped.
    pub fn parse(b: &[u8; LEN]) -> Result<Self, WireError> {
        if b[0] != TYPE {
            return Err(WireError::new(WireErrorKind::BadStatusType, 0, b[0]));
        }
        // RouterOS 7.23.1 clears the valid bit (issue 19: `07 1e 00 00 ...` is CPU 30); a
        // bare 1..=100 is still a percentage, a bare 0 stays "no CPU information".
        let cpu = if b[1] & CPU_VALID != 0 {
            Some((b[1] & !CPU_VALID).min(100))
        } else {
            (1..=100).contains(&b[1]).then_some(b[1])
        };
        Ok(Status {
            cpu,
            seq: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            bytes_received: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 12] {
        let v: Vec<u8> = s
            .split_whitespace()
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn constructed_vectors_both_ways() {
        let b = hex("07 8c 00 00 01 00 00 00 c0 2d b4 02");
        let s = Status::new(12, 1, 45_362_624);
        assert_eq!(s.to_bytes(), b);
        assert_eq!(Status::parse(&b), Ok(s));
        let b = hex("07 80 00 00 02 01 00 00 00 00 00 00");
        let s = Status::new(0, 258, 0);
        assert_eq!(s.to_bytes(), b);
        assert_eq!(Status::parse(&b), Ok(s));
    }

    #[test]
    fn captured_routeros_statuses() {
        // RouterOS 6, no CPU info, second 1, 224,822 bytes
        let s = Status::parse(&hex("07 00 00 00 01 00 00 00 36 6e 03 00")).unwrap();
        assert_eq!((s.cpu, s.seq, s.bytes_received), (None, 1, 224_822));
        // RouterOS server, CPU 14 %, 59,281,936 bytes
        let s = Status::parse(&hex("07 8e 00 00 01 00 00 00 10 92 88 03")).unwrap();
        assert_eq!((s.cpu, s.seq, s.bytes_received), (Some(14), 1, 59_281_936));
        // issue #9: E4 = CPU 100 %, reserved bytes non-zero are ignored
        let s = Status::parse(&hex("07 e4 07 be 01 00 00 00 00 00 00 00")).unwrap();
        assert_eq!((s.cpu, s.seq), (Some(100), 1));
    }

    #[test]
    fn cpu_capped_and_bytes_saturate() {
        let s = Status::parse(&hex("07 ff 00 00 03 00 00 00 00 00 00 00")).unwrap();
        assert_eq!(s.cpu, Some(100));
        assert_eq!(Status::new(200, 1, u64::MAX).to_bytes()[8..], [0xff; 4]);
        assert_eq!(Status::new(200, 1, 0).to_bytes()[1], 0xe4);
    }

    #[test]
    fn rejects_wrong_type() {
        let e = Status::parse(&hex("01 00 00 00 00 00 00 00 00 00 00 00")).unwrap_err();
        assert_eq!(
            (e.kind, e.offset, e.value),
            (WireErrorKind::BadStatusType, 0, 1)
        );
    }
}
