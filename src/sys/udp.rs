//! Batched UDP I/O: sendmmsg/recvmmsg, UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO) with their
//! control messages.
