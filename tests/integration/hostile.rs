//! Hostile bytes on the PostgreSQL port: random and truncated frames, absurd lengths and
//! broken start-up packets, from many connections. Each may close its own connection
//! but the server must keep answering everyone else.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::harness::{Server, connect, first_value, metric};

/// A valid protocol 3.0 start-up packet.
fn startup(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for s in ["user", user, "database", "weir", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn frame(tag: u8, len: i32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// One hostile payload, chosen by the case number.
fn random(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn payload(rng: &mut StdRng, case: usize) -> Vec<u8> {
    match case % 10 {
        // Pure noise before start-up.
        0 => {
            let n = rng.random_range(0..2048);
            random(rng, n)
        }
        // Start-up lengths that lie: huge, negative, too small.
        1 => [i32::MAX, -1, 0, 3, 7, 10_001, 1 << 30][rng.random_range(0..7)]
            .to_be_bytes()
            .to_vec(),
        // Unknown protocol versions and SSL/GSS/cancel codes with garbage after them.
        2 => {
            let code: i32 = [80877103, 80877104, 80877102, 1234, 0x00020000, 0x7fff_ffff]
                [rng.random_range(0..6)];
            let mut v = 8i32.to_be_bytes().to_vec();
            v.extend_from_slice(&code.to_be_bytes());
            let n = rng.random_range(0..64);
            v.extend(random(rng, n));
            v
        }
        // A start-up packet cut short.
        3 => {
            let s = startup("hostile");
            let cut = rng.random_range(1..s.len());
            s[..cut].to_vec()
        }
        // Valid start-up, then random message frames.
        4 => {
            let mut v = startup("hostile");
            for _ in 0..rng.random_range(1..8) {
                let tag = b"QPBDESHCXdcfpF"[rng.random_range(0..14)];
                let n = rng.random_range(0..256);
                let body = random(rng, n);
                v.extend(frame(tag, body.len() as i32 + 4, &body));
            }
            v
        }
        // Valid start-up, then a frame whose length is absurd or negative.
        5 => {
            let mut v = startup("hostile");
            let len = [i32::MAX, 0x3fff_fffd, -5, 0, 2, 3][rng.random_range(0..6)];
            v.extend(frame(b'Q', len, b"SELECT 1\0"));
            v
        }
        // Valid start-up, then a truncated frame.
        6 => {
            let mut v = startup("hostile");
            v.extend(frame(b'Q', 100, b"SELECT"));
            v
        }
        // Extended-protocol messages with counts that do not match their bodies.
        7 => {
            let mut v = startup("hostile");
            let mut bind = b"\0\0".to_vec();
            bind.extend_from_slice(&[0xff, 0xff, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0]);
            v.extend(frame(b'B', bind.len() as i32 + 4, &bind));
            let mut parse = b"s1\0SELECT $1\0".to_vec();
            parse.extend_from_slice(&[0x7f, 0xff, 0, 0, 0, 23]);
            v.extend(frame(b'P', parse.len() as i32 + 4, &parse));
            v.extend(frame(b'S', 4, &[]));
            v
        }
        // Invalid UTF-8 in a query and in start-up parameters.
        8 => {
            let mut v = startup("\u{fffd}");
            v.extend(frame(b'Q', 4 + 5, &[0xff, 0xfe, b';', 0xc3, 0]));
            v
        }
        // Noise after a valid query.
        _ => {
            let mut v = startup("hostile");
            v.extend(frame(b'Q', 4 + 9, b"SELECT 1\0"));
            let n = rng.random_range(1..512);
            v.extend(random(rng, n));
            v
        }
    }
}

fn send(port: u16, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    // Drain whatever the server says until it closes; a timeout here means a stuck connection.
    let mut sink = [0u8; 4096];
    while let Ok(n) = s.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_close_only_their_own_connection() {
    let mut server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;

    let seed: u64 = std::env::var("WEIR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    println!("hostile-input seed: {seed}");
    let port = server.pg_port;
    const CONNECTIONS: usize = 3000;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed + w);
                for case in (w as usize..CONNECTIONS).step_by(4) {
                    let bytes = payload(&mut rng, case);
                    send(port, &bytes);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }

    assert!(server.alive(), "server died under hostile input");
    // The connection opened before the storm still works, and so does a new one.
    let n: i64 = client
        .query_one("SELECT count(*) FROM typed", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let fresh = connect(&server).await;
    let rows = fresh.simple_query("SELECT 41 + 1 AS answer").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("42"));
    // Every hostile connection was accepted and counted; none is left open.
    assert!(metric(server.http_port, "weir_pg_connections_total") >= (CONNECTIONS + 2) as f64);
    assert_eq!(metric(server.http_port, "weir_pg_connections_open"), 2.0);
    drop(client);
    drop(fresh);
    assert!(server.stop().success());
}

/// Inputs the wire fuzz targets (`fuzz/`) found to panic pgwire 0.41.1's decoder or to
/// read past a frame: message bodies cut short or with counts past their frame, a
/// start-up packet whose parameters run past its length, and a Sync frame with a body.
fn fuzz_findings() -> Vec<(&'static str, Vec<u8>)> {
    let after_startup = |frames: Vec<u8>| {
        let mut v = startup("fuzz");
        v.extend(frames);
        v
    };
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0u16.to_be_bytes()); // no format codes
    bind.extend_from_slice(&1u16.to_be_bytes()); // one parameter,
    bind.extend_from_slice(&5397i32.to_be_bytes()); // longer than the frame
    bind.extend_from_slice(b"ab");
    // Start-up parameters with no terminator inside the declared length.
    let mut short_startup = 13i32.to_be_bytes().to_vec();
    short_startup.extend_from_slice(&196608i32.to_be_bytes());
    short_startup.extend_from_slice(b"user\0fuzz\0database\0weir\0\0");
    let mut sync_with_body = frame(b'Q', 4 + 9, b"SELECT 1\0");
    sync_with_body = frame(b'S', 4 + sync_with_body.len() as i32, &sync_with_body);
    vec![
        (
            "Parse with an empty body",
            after_startup(frame(b'P', 4, &[])),
        ),
        (
            "Execute with an empty body",
            after_startup(frame(b'E', 4, &[])),
        ),
        (
            "Describe with an empty body",
            after_startup(frame(b'D', 4, &[])),
        ),
        (
            "Bind value longer than its frame",
            after_startup(frame(b'B', bind.len() as i32 + 4, &bind)),
        ),
        ("start-up parameters past the packet", short_startup),
        ("Sync with a body", after_startup(sync_with_body)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_findings_close_only_their_own_connection() {
    let mut server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;
    for (what, bytes) in fuzz_findings() {
        let mut s = TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // The server must close this connection, not leave it hanging.
        let mut sink = [0u8; 4096];
        loop {
            match s.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{what}: connection not closed: {e}"),
            }
        }
        assert!(server.alive(), "server died on: {what}");
        let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
        assert_eq!(first_value(&rows).as_deref(), Some("42"), "after: {what}");
    }
    let fresh = connect(&server).await;
    let rows = fresh.simple_query("SELECT 1").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("1"));
    assert_eq!(metric(server.http_port, "weir_pg_connections_open"), 2.0);
    drop(client);
    drop(fresh);
    assert!(server.stop().success());
}

/// A binary `text[]` parameter whose 20-byte header claims 2^31 - 1 elements: found by
/// the `bind_params` fuzz target; postgres-types reserved room for them all and the
/// server aborted on a 48 GiB allocation. It must fail alone with 22P03.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_array_claiming_billions_of_elements_fails_alone() {
    let mut server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;
    let mut bytes = startup("fuzz");
    let mut parse = b"\0SELECT $1::text[]\0".to_vec();
    parse.extend_from_slice(&1i16.to_be_bytes());
    parse.extend_from_slice(&1009u32.to_be_bytes()); // text[]
    bytes.extend(frame(b'P', parse.len() as i32 + 4, &parse));
    let mut array = Vec::new();
    for v in [1i32, 0, 25, i32::MAX, 1] {
        array.extend_from_slice(&v.to_be_bytes()); // ndim, flags, text, length, lower bound
    }
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&[0, 1, 0, 1, 0, 1]); // one binary format code, one value
    bind.extend_from_slice(&(array.len() as i32).to_be_bytes());
    bind.extend(array);
    bind.extend_from_slice(&[0, 0]);
    bytes.extend(frame(b'B', bind.len() as i32 + 4, &bind));
    bytes.extend(frame(b'E', 9, &[0, 0, 0, 0, 0]));
    bytes.extend(frame(b'S', 4, &[]));
    let mut s = TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // ReadyForQuery once after start-up, and once more after Sync.
    let ready = |out: &[u8]| out.windows(6).filter(|w| *w == b"Z\0\0\0\x05I").count();
    while ready(&out) < 2 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        out.windows(6).any(|w| w == b"C22P03"),
        "no 22P03 error: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(server.alive(), "server died on a binary array header");
    let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("42"));
    drop(client);
    assert!(server.stop().success());
}

/// A socket from `from` (another loopback address) to the server's PostgreSQL port.
async fn socket_from(from: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

/// 500 sockets from one address that never authenticate: they fill only the small
/// unauthenticated pool, never max_connections, and a client from elsewhere logs in and
/// queries. The attacker's oldest sockets are the ones closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_authenticate_do_not_lock_out_clients() {
    use tokio::io::AsyncWriteExt;
    let mut server = Server::start_with(
        "tests/fixtures/sql",
        &["--auth-password", "pw", "--max-connections", "4"],
    );
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut s = socket_from("127.0.0.2", server.pg_port).await.unwrap();
        // Half send a start-up packet and stop there; half send nothing at all.
        if i % 2 == 0 {
            s.write_all(&startup("idle")).await.unwrap();
        }
        idle.push(s);
    }
    let mut config = server.pg_config();
    config.password("pw");
    for _ in 0..3 {
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            config.connect(tokio_postgres::NoTls),
        )
        .await
        .expect("a client logs in while 500 sockets wait")
        .unwrap();
        tokio::spawn(conn);
        let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
        assert_eq!(first_value(&rows).as_deref(), Some("42"));
    }
    assert!(server.alive());
    drop(idle);
}

/// Read what the server answers until it closes the connection.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A 100 MB frame before login (a start-up packet, a password message) and after it (a
/// query) is refused with 54000 from its header alone; the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_frame_is_refused_before_and_after_login() {
    let mut server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;
    const BIG: i32 = 100_000_004;
    let chunk = vec![b'x'; 64 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("start-up packet", {
            let mut v = BIG.to_be_bytes().to_vec();
            v.extend_from_slice(&196608i32.to_be_bytes());
            v
        }),
        ("query after start-up", {
            let mut v = startup("big");
            v.push(b'Q');
            v.extend_from_slice(&BIG.to_be_bytes());
            v
        }),
    ];
    for (what, head) in cases {
        let mut s = TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&head).unwrap();
        // Some of the body; the server does not wait for the rest.
        let _ = s.write_all(&chunk);
        let answer = read_all(&mut s);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("C54000"), "{what}: {text}");
        assert!(text.contains("exceeds the limit"), "{what}: {text}");
        assert!(server.alive(), "server died on a 100 MB {what}");
    }
    // With a password, the frames of the exchange are capped before login.
    let mut secured = Server::start_with("tests/fixtures/sql", &["--auth-password", "pw"]);
    let mut s = TcpStream::connect(("127.0.0.1", secured.pg_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut v = startup("big");
    v.push(b'p');
    v.extend_from_slice(&BIG.to_be_bytes());
    s.write_all(&v).unwrap();
    let _ = s.write_all(&chunk);
    let text = String::from_utf8_lossy(&read_all(&mut s)).to_string();
    assert!(
        text.contains("C54000") && text.contains("before authentication"),
        "{text}"
    );
    assert!(secured.alive());
    let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("42"));
}

/// `SELECT 1+1+…` with 10,000 and 20,000 terms: 54001 over both protocols, and the
/// server keeps answering; a 500-term one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_too_complex_and_the_server_goes_on() {
    let mut server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;
    let sum = |n: usize| format!("SELECT 1{}", "+1".repeat(n));
    for n in [10_000, 20_000] {
        let err = client.simple_query(&sum(n)).await.unwrap_err();
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "54001", "{n}: {}", db.message());
        assert!(
            db.message().contains("statement too complex"),
            "{}",
            db.message()
        );
        let err = client.query(&sum(n), &[]).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("54001"), "{n}: {err}");
        assert!(server.alive(), "server died on {n} terms");
    }
    let rows = client.simple_query(&sum(500)).await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("501"));
    let n: i64 = client.query_one(&sum(500), &[]).await.unwrap().get(0);
    assert_eq!(n, 501);
}
