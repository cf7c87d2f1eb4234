//! Authentication and TLS on the PostgreSQL port: SCRAM-SHA-256 with plain passwords and
//! PostgreSQL verifiers, wrong and missing passwords, unknown users, concurrent logins,
//! TLS with a certificate made at test time, `tls_required`, and the non-loopback rule.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use pgwire::tokio::tokio_rustls::rustls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::harness::{Server, first_value, free_port, weir_bin};

const SQL: &str = "tests/fixtures/sql";

/// `SQLSTATE message` of a server error, else the client's error and its cause.
fn code(e: &tokio_postgres::Error) -> String {
    use std::error::Error;
    match (e.as_db_error(), e.source()) {
        (Some(d), _) => format!("{} {}", d.code().code(), d.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// A users file in `dir`: `alice` with a plain password, `bob` with a PostgreSQL verifier
/// (as `pg_authid.rolpassword` holds it), and `userN` for the concurrent logins.
fn users_file(dir: &Path) -> String {
    let bob = postgres_protocol::password::scram_sha_256(b"bob pw");
    let mut text = format!("# who may connect\nalice:alice:pw\n\nbob:{bob}\n");
    for i in 0..8 {
        text.push_str(&format!("user{i}:secret-{i}\n"));
    }
    let path = dir.join("users");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Connect as `user` with `password`, run `SELECT 1`, and return what came back or the
/// error as `SQLSTATE message`.
async fn login(server: &Server, user: &str, password: Option<&str>) -> Result<String, String> {
    let mut config = server.pg_config();
    config.user(user);
    if let Some(p) = password {
        config.password(p);
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| code(&e))?;
    tokio::spawn(conn);
    let rows = client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| code(&e))?;
    Ok(first_value(&rows).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_with_scram() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(dir.path());
    let server = Server::start_with(SQL, &["--auth-users-file", &file]);

    assert_eq!(
        login(&server, "alice", Some("alice:pw")).await,
        Ok("1".into())
    );
    assert_eq!(login(&server, "bob", Some("bob pw")).await, Ok("1".into()));
    assert_eq!(
        login(&server, "alice", Some("wrong")).await,
        Err("28P01 password authentication failed for user \"alice\"".into())
    );
    assert_eq!(
        login(&server, "bob", Some("alice:pw")).await,
        Err("28P01 password authentication failed for user \"bob\"".into())
    );
    // An unknown user gets the same answer as a wrong password.
    assert_eq!(
        login(&server, "mallory", Some("alice:pw")).await,
        Err("28P01 password authentication failed for user \"mallory\"".into())
    );
    // Without a password the client cannot answer the SCRAM request, as with PostgreSQL.
    let missing = login(&server, "alice", None).await.unwrap_err();
    assert!(missing.contains("password missing"), "{missing}");
    // Nothing of that disturbed the server.
    assert_eq!(
        login(&server, "alice", Some("alice:pw")).await,
        Ok("1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_password_admits_any_user_name() {
    let server = Server::start_with(SQL, &["--auth-password", "open sesame"]);
    assert_eq!(
        login(&server, "anyone", Some("open sesame")).await,
        Ok("1".into())
    );
    assert_eq!(
        login(&server, "grafana", Some("open sesame")).await,
        Ok("1".into())
    );
    assert_eq!(
        login(&server, "anyone", Some("open")).await,
        Err("28P01 password authentication failed for user \"anyone\"".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_keep_their_own_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(dir.path());
    let server = Arc::new(Server::start_with(SQL, &["--auth-users-file", &file]));
    let barrier = Arc::new(tokio::sync::Barrier::new(48));
    let mut tasks = Vec::new();
    for n in 0..48 {
        let (server, barrier) = (server.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let i = n % 8;
            let user = format!("user{i}");
            // Every third client gets its password wrong.
            let right = n % 3 != 0;
            let password = if right {
                format!("secret-{i}")
            } else {
                format!("secret-{}", (i + 1) % 8)
            };
            barrier.wait().await;
            let outcome = login(&server, &user, Some(&password)).await;
            (user, right, outcome)
        }));
    }
    for task in tasks {
        let (user, right, outcome) = task.await.unwrap();
        if right {
            assert_eq!(outcome, Ok("1".into()), "{user}");
        } else {
            assert_eq!(
                outcome,
                Err(format!(
                    "28P01 password authentication failed for user \"{user}\""
                ))
            );
        }
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as `cert.pem` and
/// `key.pem` into `dir`; returns the paths and a TLS connector that trusts it.
fn certificate(dir: &Path) -> (String, String, MakeRustlsConnect) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
        MakeRustlsConnect::new(config),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_connect_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, tls) = certificate(dir.path());
    let server = Server::start_with(
        SQL,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--auth-password",
            "pw",
        ],
    );
    let mut config = server.pg_config();
    config.password("pw").ssl_mode(SslMode::Require);
    let (client, conn) = config.connect(tls.clone()).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .simple_query("SELECT count(*) FROM products")
        .await
        .unwrap();
    assert!(first_value(&rows).is_some());
    // Wrong passwords are refused over TLS too.
    config.password("nope");
    let err = config.connect(tls).await.err().unwrap();
    assert_eq!(
        code(&err),
        "28P01 password authentication failed for user \"weir_test\""
    );
    // TLS is offered, not required: a plain client still gets in.
    assert_eq!(
        login(&server, "weir_test", Some("pw")).await,
        Ok("1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plain_clients_with_28000() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, tls) = certificate(dir.path());
    let server = Server::start_with(
        SQL,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-required"],
    );
    let mut config = server.pg_config();
    config.ssl_mode(SslMode::Disable);
    let err = config.connect(tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(
        code(&err),
        "28000 SSL/TLS is required: connect with sslmode=require"
    );
    config.ssl_mode(SslMode::Require);
    let (client, conn) = config.connect(tls).await.unwrap();
    tokio::spawn(conn);
    let rows = client.simple_query("SELECT 2").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_authentication() {
    let port = free_port();
    let out = Command::new(weir_bin())
        .args(["serve", "--sql-dir", SQL])
        .args(["--pg-listen", &format!("0.0.0.0:{port}")])
        .args(["--http-listen", "127.0.0.1:0"])
        .env("WEIR_LOG", "error")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "refusing to listen on 0.0.0.0:{port} without authentication; set auth_users_file or auth_password"
        )),
        "{stderr}"
    );

    let server = Server::start_on_host("0.0.0.0", SQL, &["--auth-password", "pw"]);
    assert_eq!(login(&server, "me", Some("pw")).await, Ok("1".into()));
    assert_eq!(
        login(&server, "me", None).await.unwrap_err(),
        "invalid configuration: password missing"
    );
}

/// A client that ignores a refused login and sends a statement anyway gets nothing run:
/// the connection is closed after the one FATAL error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_after_a_refused_login_are_not_run() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(SQL, &["--auth-password", "pw"]);
    let frame = |tag: u8, body: &[u8]| {
        let mut out = vec![tag];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.pg_port))
        .await
        .unwrap();
    let params = b"user\0eve\0database\0weir\0\0";
    let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(params);
    socket.write_all(&startup).await.unwrap();
    let mut sasl = [0u8; 24];
    socket.read_exact(&mut sasl).await.unwrap();
    assert_eq!(&sasl[9..22], b"SCRAM-SHA-256");
    let mut pipelined = frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x05junk!");
    pipelined.extend(frame(b'Q', b"CREATE TABLE eve_was_here AS SELECT 1\0"));
    socket.write_all(&pipelined).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with(b"E") && text.contains("C08P01"),
        "{text}"
    );
    // One message: the error, and nothing after it.
    let first_len = u32::from_be_bytes(answer[1..5].try_into().unwrap()) as usize;
    assert_eq!(answer.len(), 1 + first_len, "{text}");
    assert_eq!(
        login(&server, "me", Some("pw")).await,
        Ok("1".into()),
        "the server still serves"
    );
    let mut config = server.pg_config();
    config.password("pw");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let err = client
        .simple_query("SELECT * FROM eve_was_here")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
}

/// 10,000 wrong passwords from 127.0.0.2, as fast as it can send them: its attempts are
/// slowed and crowd only its own connections out of the unauthenticated pool, while the
/// right password from 127.0.0.1 logs in within seconds, and the failures are logged once,
/// not 10,000 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_one_address_do_not_slow_another() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Arc::new(Server::start_with(
        SQL,
        &["--auth-password", "pw", "--log", "warn"],
    ));
    // One wrong password from 127.0.0.2 gets its answer: the burst begins.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], server.pg_port).into())
        .await
        .unwrap();
    let mut eve = server.pg_config();
    eve.user("eve").password("guess");
    let refused = eve
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        code(&refused),
        "28P01 password authentication failed for user \"eve\""
    );
    let attempts = Arc::new(AtomicUsize::new(0));
    const ATTEMPTS: usize = 10_000;
    let mut attackers = Vec::new();
    // More at once than the unauthenticated pool stretches to: the attacker's own waiting
    // attempts are closed to make room for its next ones.
    for _ in 0..300 {
        let (server, attempts) = (server.clone(), attempts.clone());
        attackers.push(tokio::spawn(async move {
            let mut config = server.pg_config();
            config.user("eve").password("guess");
            while attempts.fetch_add(1, Ordering::SeqCst) < ATTEMPTS {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let Ok(stream) = socket
                    .connect(([127, 0, 0, 1], server.pg_port).into())
                    .await
                else {
                    continue;
                };
                let outcome = config.connect_raw(stream, tokio_postgres::NoTls).await;
                assert!(outcome.is_err(), "a wrong password logged in");
            }
        }));
    }
    // The right password, from the other address, while the attack goes on.
    while attempts.load(Ordering::SeqCst) < ATTEMPTS / 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            login(&server, "alice", Some("pw")),
        )
        .await
        .expect("the right password logs in within 10 s during the attack");
        assert_eq!(outcome, Ok("1".into()));
    }
    for a in attackers {
        a.await.unwrap();
    }
    let log = server.output();
    let logged = log
        .lines()
        .filter(|l| l.contains("password authentication failed") && l.contains("127.0.0.2"))
        .count();
    assert!(
        logged <= 3,
        "{logged} lines for one burst of failures:\n{}",
        &log[..log.len().min(4000)]
    );
    assert_eq!(
        login(&server, "alice", Some("pw")).await,
        Ok("1".into()),
        "the server still serves"
    );
}
