//! Issue 19: servers that are not ours. A server whose TCP chunks begin with bytes that look
//! like a status, one that sends a stray duplicate OK, a RouterOS 7.x status with the CPU high
//! bit clear, and a server that sends UDP from another port than the one it announced. Each is
//! a small fake server on raw sockets, speaking just enough btest.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use btest::engine::StopReason;
use btest::wire::{Direction, Protocol};

use crate::util::*;

/// Accepts connections for ever (the thread dies with the test binary); each gets the hello,
/// its 16-byte command read, an OK, then `then` on its own thread.
fn fake_server(then: fn(TcpStream, [u8; 16])) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                if s.write_all(&[1, 0, 0, 0]).is_err() {
                    return;
                }
                let mut cmd = [0u8; 16];
                if s.read_exact(&mut cmd).is_err() || s.write_all(&[1, 0, 0, 0]).is_err() {
                    return;
                }
                then(s, cmd);
            });
        }
    });
    addr
}

/// Reads (and drops) what the client sends until its FIN, then closes the connection: the
/// answer a btest server gives to the client's end of the test.
fn close_on_fin(s: &TcpStream) {
    let mut r = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        let _ = r.shutdown(Shutdown::Both);
    });
}

/// Sends zero chunks of 32768 bytes that each begin `07 00 00 00 01 00 00 00`, as one
/// open-source server's do, until the client's FIN: 256 KiB per millisecond at most (about
/// 2 Gbit/s), not as fast as loopback takes them, which saturated a core for the test's 10 s
/// beside the rate-measuring tests (issue 20); what matters is how the chunks look.
fn status_looking_chunks(mut s: TcpStream, _cmd: [u8; 16]) {
    close_on_fin(&s);
    let mut chunk = vec![0u8; 32768];
    chunk[..8].copy_from_slice(&[7, 0, 0, 0, 1, 0, 0, 0]);
    let batch: Vec<u8> = chunk.repeat(8);
    while s.write_all(&batch).is_ok() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn status_looking_chunks_never_turn_a_completed_test_into_a_failure() {
    watchdog(120, || {
        let addr = status_looking_chunks_server();
        for k in 0..20 {
            let cfg = client_cfg(addr, Protocol::Tcp, Direction::ServerTx, 0.5);
            let (r, _) = run_client(&cfg);
            let r = r.unwrap_or_else(|e| panic!("test {k}: {e}"));
            assert_eq!(
                r.summary.end_reason,
                StopReason::Completed,
                "test {k} of 20 ended {:?}",
                r.summary.end_reason
            );
            assert!(r.summary.status.totals.rx_bytes > 0, "test {k}");
        }
    });
}

fn status_looking_chunks_server() -> SocketAddr {
    fake_server(status_looking_chunks)
}

/// The stray OK and then exactly 100,000 zero bytes, then idle until the client's FIN.
fn stray_ok_then_zeros(mut s: TcpStream, _cmd: [u8; 16]) {
    close_on_fin(&s);
    let _ = s.write_all(&[1, 0, 0, 0]);
    let _ = s.write_all(&vec![0u8; 100_000]);
    std::thread::sleep(Duration::from_secs(5));
}

#[test]
fn a_stray_duplicate_ok_is_not_data() {
    watchdog(30, || {
        let addr = fake_server(stray_ok_then_zeros);
        let cfg = client_cfg(addr, Protocol::Tcp, Direction::ServerTx, 1.0);
        let (r, _) = run_client(&cfg);
        let r = r.unwrap();
        assert_eq!(r.summary.status.totals.rx_bytes, 100_000, "{:?}", r.summary);
    });
}

/// Issue 19, item 3: with GRO on, the kernel counts a full receive buffer's drops in socket
/// buffers of up to 64 datagrams; counted as datagrams they were 1/44 of the loss and the rest
/// showed as wire loss. On loopback there is no wire: an unlimited receive (the server sends
/// 1.5x what got through, so our socket overflows) must put nearly all loss on this host.
#[test]
fn loopback_loss_is_this_hosts_not_the_wires() {
    use btest::config::UdpIo;
    watchdog(60, || {
        let _x = exclusive();
        let srv = start_server(server_cfg());
        let mut c = client_cfg(srv.addr, Protocol::Udp, Direction::ServerTx, 2.0);
        c.tuning.udp_io = UdpIo::Auto;
        let (r, samples) = run_client(&c);
        let r = r.unwrap();
        for s in &samples {
            println!(
                "interval: lost {} host {:?}",
                s.delta.lost as i64, s.host_drops
            );
        }
        let st = &r.summary.status;
        let lost = st.totals.lost;
        let Some(host) = st.host_drops else {
            println!("skipped: /proc/net/udp not readable here, host drops unknown");
            return;
        };
        let io = r.summary.udp_rx_io;
        println!("udp_rx_io {io:?}: lost {lost}, dropped by this host {host}");
        if lost < 1000 {
            println!("skipped: this host kept up ({lost} lost), nothing to split");
            return;
        }
        assert!(host <= lost, "{host} > {lost}");
        // Measured: 0.04-0.2 % left as wire loss (drops and the gaps they make can fall in
        // neighbouring intervals). 5 % holds on a busy machine; the old count left 97.7 %.
        let wire = lost - host;
        assert!(
            wire * 20 <= lost,
            "wire {wire} of {lost} lost on loopback ({io:?})"
        );
    });
}

/// Issue 19, item 5: a server that announces one UDP port and sends from another (RouterOS
/// through NAT). The client's socket is connected to the announced port; after 1.5 s of
/// nothing from it, the reader takes the server's datagrams from any of its ports.
#[cfg(feature = "other-port")]
#[test]
fn udp_from_another_port_than_announced_is_received() {
    watchdog(40, || {
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client_port = free.local_addr().unwrap().port();
        drop(free);
        if client_port < 1024 + 256 {
            println!("skipped: ephemeral port {client_port} too low");
            return;
        }
        let announced = client_port - 256;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&[1, 0, 0, 0]).unwrap();
            let mut cmd = [0u8; 16];
            s.read_exact(&mut cmd).unwrap();
            s.write_all(&[1, 0, 0, 0]).unwrap();
            s.write_all(&announced.to_be_bytes()).unwrap();
            close_on_fin(&s);
            // another port than the announced one
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to: SocketAddr = format!("127.0.0.1:{client_port}").parse().unwrap();
            let mut d = vec![0u8; 1000];
            let t0 = std::time::Instant::now();
            let mut seq = 1u32;
            while t0.elapsed() < Duration::from_secs(5) {
                d[..4].copy_from_slice(&seq.to_be_bytes());
                let _ = u.send_to(&d, to);
                seq += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let cfg = client_cfg(addr, Protocol::Udp, Direction::ServerTx, 3.0);
        let (r, samples) = run_client(&cfg);
        let r = r.unwrap();
        let got = r.summary.status.totals.rx_packets;
        // 1.5 s of 3 s deaf, then about 500 a second (2 ms apart, a loaded host sleeps longer)
        assert!(got > 50, "received {got}: {samples:?}");
        assert_eq!(r.summary.end_reason, StopReason::Completed);
        let first = samples.first().map_or(0, |s| s.delta.rx_packets);
        assert_eq!(
            first, 0,
            "the first second came from the other port, unread"
        );
        srv.join().unwrap();
    });
}

/// Issue 19, item 4: a server that answers a 4-connection command with a token, then closes
/// each data connection as it joins and sends on connection 0 only. The summary counts the
/// connection that really ran, not the four that were opened.
#[test]
fn the_summary_counts_the_connections_that_really_ran() {
    watchdog(30, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut cmd = [0u8; 16];
                    if s.write_all(&[1, 0, 0, 0]).is_err() || s.read_exact(&mut cmd).is_err() {
                        return;
                    }
                    if cmd[0] == 1 || cmd[0] == 0 {
                        // A command (TCP or UDP): OK with a token, then data on this one.
                        if s.write_all(&[1, 0x12, 0x34, 0]).is_err() {
                            return;
                        }
                        close_on_fin(&s);
                        let zeros = vec![0u8; 32768];
                        while s.write_all(&zeros).is_ok() {}
                    }
                    // A join marker: refused, closed at once.
                });
            }
        });
        let mut cfg = client_cfg(addr, Protocol::Tcp, Direction::ServerTx, 1.0);
        cfg.connection_count = 4;
        cfg.latency = btest::config::Latency::Off;
        let (r, _) = run_client(&cfg);
        let r = r.expect("the test ran on connection 0");
        assert_eq!(r.connections, 1, "{:?}", r.summary.tcp_links_ran);
    });
}
