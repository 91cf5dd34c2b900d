//! Login cost per side: EC-SRP5 client and server handshakes, building a verifier, and
//! the MD5 reply / check. Prints one line per figure, the median of `RUNS` runs.
//!
//! Run with `cargo bench --bench auth`. Inputs are derived from fixed seeds so runs are
//! comparable; each run uses fresh private scalars because scalar multiplication time
//! depends on the scalar's bits.

use std::hint::black_box;
use std::time::{Duration, Instant};

use btest::auth::ec_srp5::{parse_msg1, ClientHandshake, ServerHandshake, Verifier, PROOF_LEN};
use btest::auth::md5;
use sha2::{Digest, Sha256};

/// Timed runs per figure; the median is reported.
const RUNS: usize = 25;
/// MD5 operations per timed run (one is too short to time).
const MD5_BATCH: u32 = 10_000;

const USER: &[u8] = b"admin";
const PASSWORD: &[u8] = b"bench password";

fn seed(label: &str, n: usize) -> [u8; 32] {
    Sha256::new()
        .chain_update(label)
        .chain_update(n.to_be_bytes())
        .finalize()
        .into()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Everything one handshake needs, computed before timing starts.
struct Run {
    s_a: [u8; 32],
    s_b: [u8; 32],
    msg1: Vec<u8>,
    msg2: [u8; 49],
    msg3: [u8; PROOF_LEN],
    msg4: [u8; PROOF_LEN],
}

fn prepare(verifier: &Verifier, n: usize) -> Run {
    let s_a = seed("s_a", n);
    let s_b = seed("s_b", n);
    let (mut client, msg1) = ClientHandshake::new(USER, PASSWORD, s_a);
    let parsed = parse_msg1(&msg1).expect("bench MSG1 parses");
    let (server, msg2) = ServerHandshake::new(verifier, &parsed, s_b).expect("bench MSG2");
    let msg3 = client.on_msg2(&msg2).expect("bench MSG3");
    let msg4 = server.on_msg3(&msg3).expect("bench MSG4");
    client.on_msg4(&msg4).expect("bench login succeeds");
    Run {
        s_a,
        s_b,
        msg1,
        msg2,
        msg3,
        msg4,
    }
}

fn main() {
    let salt: [u8; 16] = seed("salt", 0)[..16].try_into().expect("16 bytes");

    // Verifier::new (the server does this once per user, not per login).
    let mut verifier_times = Vec::with_capacity(RUNS);
    for n in 0..=RUNS {
        let t = Instant::now();
        black_box(Verifier::new(black_box(USER), black_box(PASSWORD), salt));
        // The first run also initialises the curve constants; leave it out.
        if n > 0 {
            verifier_times.push(t.elapsed());
        }
    }
    let verifier = Verifier::new(USER, PASSWORD, salt);
    let runs: Vec<Run> = (0..RUNS).map(|n| prepare(&verifier, n)).collect();

    let mut client_times = Vec::with_capacity(RUNS);
    for run in &runs {
        let t = Instant::now();
        let (mut client, msg1) = ClientHandshake::new(USER, PASSWORD, black_box(run.s_a));
        black_box(msg1);
        let msg3 = client.on_msg2(black_box(&run.msg2)).expect("MSG2 accepted");
        client.on_msg4(black_box(&run.msg4)).expect("MSG4 accepted");
        client_times.push(t.elapsed());
        assert_eq!(msg3, run.msg3);
    }

    let mut server_times = Vec::with_capacity(RUNS);
    for run in &runs {
        let t = Instant::now();
        let parsed = parse_msg1(black_box(&run.msg1)).expect("MSG1 parses");
        let (server, msg2) =
            ServerHandshake::new(&verifier, &parsed, black_box(run.s_b)).expect("MSG1 accepted");
        black_box(msg2);
        let msg4 = server.on_msg3(black_box(&run.msg3)).expect("MSG3 accepted");
        server_times.push(t.elapsed());
        assert_eq!(msg4, run.msg4);
    }

    let challenge: [u8; 16] = seed("challenge", 0)[..16].try_into().expect("16 bytes");
    let reply = md5::client_reply(USER, PASSWORD, &challenge);
    let mut md5_client_times = Vec::with_capacity(RUNS);
    let mut md5_server_times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..MD5_BATCH {
            black_box(md5::client_reply(
                black_box(USER),
                black_box(PASSWORD),
                black_box(&challenge),
            ));
        }
        md5_client_times.push(t.elapsed() / MD5_BATCH);

        let t = Instant::now();
        for _ in 0..MD5_BATCH {
            assert!(md5::verify(
                black_box(&reply),
                Some(black_box(PASSWORD)),
                black_box(&challenge)
            ));
        }
        md5_server_times.push(t.elapsed() / MD5_BATCH);
    }

    println!(
        "ecsrp5 client: {:.2} ms/handshake",
        ms(median(client_times))
    );
    println!(
        "ecsrp5 server: {:.2} ms/handshake",
        ms(median(server_times))
    );
    println!("ecsrp5 verifier: {:.2} ms/user", ms(median(verifier_times)));
    println!(
        "md5 client: {:.3} us/handshake",
        median(md5_client_times).as_secs_f64() * 1e6
    );
    println!(
        "md5 server: {:.3} us/handshake",
        median(md5_server_times).as_secs_f64() * 1e6
    );
}
