"""Password authentication (SCRAM-SHA-256) and TLS from the real clients: psql with PGPASSWORD
and sslmode=require, psycopg2, psycopg 3 and asyncpg with right and wrong passwords, and a
plain-text client refused when TLS is required.

These start their own servers (not the session's), with a users file and a self-signed
certificate made by openssl in a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time

import asyncpg
import psycopg
import psycopg2
import pytest

from conftest import READY_TIMEOUT_S, ROOT, _die_with_parent, _free_port, _healthz, weir_binary

PSQL = shutil.which("psql")
OPENSSL = shutil.which("openssl")

pytestmark = pytest.mark.skipif(
    os.environ.get("WEIR_TEST_PG") is not None, reason="starts its own servers"
)

WRONG = 'password authentication failed for user "alice"'


@contextlib.contextmanager
def weir_server(tmp_path, *extra, flight_port=None):
    """A `weir serve` on free loopback ports with extra flags; stopped with SIGTERM."""
    pg_port, http_port = _free_port(), _free_port()
    flight_port = flight_port or _free_port()
    log_path = tmp_path / f"weir-{pg_port}.log"
    cmd = [
        str(weir_binary()), "serve",
        "--sql-dir", str(ROOT / "tests/fixtures/sql"),
        "--pg-listen", f"127.0.0.1:{pg_port}",
        "--http-listen", f"127.0.0.1:{http_port}",
        "--flight-listen", f"127.0.0.1:{flight_port}",
        "--data-dir", str(tmp_path / f"data-{pg_port}"),
        # The fixtures read the repository's data.
        "--storage-allowed-locations", str(ROOT),
        *extra,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _healthz(http_port):
                assert proc.poll() is None, f"weir exited {proc.returncode}:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, "weir not ready"
                time.sleep(0.1)
            yield pg_port, log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """A users file (alice: plain password) and a self-signed certificate for 127.0.0.1."""
    d = tmp_path_factory.mktemp("auth")
    (d / "users").write_text("alice:Al1ce pw\n")
    if OPENSSL is None:
        pytest.fail("openssl not installed (scripts/setup.sh installs it)", pytrace=False)
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )
    return d


@pytest.fixture(scope="module")
def tls_server(secrets, tmp_path_factory):
    """Users file and TLS (offered, not required)."""
    with weir_server(tmp_path_factory.mktemp("tls"), "--auth-users-file", str(secrets / "users"),
                     "--tls-cert", str(secrets / "cert.pem"), "--tls-key", str(secrets / "key.pem")) as s:
        yield s


@pytest.fixture(scope="module")
def required_server(secrets, tmp_path_factory):
    """TLS required, any user with one password (given in the environment)."""
    d = tmp_path_factory.mktemp("required")
    os.environ["WEIR_AUTH_PASSWORD"] = "shared pw"
    try:
        with weir_server(d, "--tls-cert", str(secrets / "cert.pem"), "--tls-key", str(secrets / "key.pem"),
                         "--tls-required") as s:
            yield s
    finally:
        del os.environ["WEIR_AUTH_PASSWORD"]


def psql(port, password, *args, sslmode="prefer", user="alice"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGCONNECT_TIMEOUT="10", PGSSLMODE=sslmode)
    if password is not None:
        env["PGPASSWORD"] = password
    cmd = [PSQL, "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "weir", "-X", "-A", "-t", "-w", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(PSQL is None, reason="psql not installed (scripts/setup.sh installs it)")
def test_psql_with_the_right_password_over_tls(tls_server):
    port, _ = tls_server
    proc = psql(port, "Al1ce pw", "-c", "SELECT count(*) > 0 FROM products", "-c", "\\conninfo",
                sslmode="require")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "t"
    assert "SSL connection" in proc.stdout, proc.stdout


@pytest.mark.skipif(PSQL is None, reason="psql not installed (scripts/setup.sh installs it)")
def test_psql_wrong_and_missing_passwords(tls_server):
    port, log = tls_server
    proc = psql(port, "nope", "-c", "SELECT 1")
    assert proc.returncode != 0
    assert WRONG in proc.stderr, proc.stderr
    proc = psql(port, None, "-c", "SELECT 1")
    assert proc.returncode != 0
    assert "no password supplied" in proc.stderr, proc.stderr
    # The failure is logged with the user and the peer, never the password.
    text = log.read_text()
    assert "password authentication failed" in text and "alice" in text and "127.0.0.1" in text
    assert "nope" not in text and "Al1ce pw" not in text


def test_psycopg3_right_and_wrong_password(tls_server):
    port, _ = tls_server
    kw = dict(host="127.0.0.1", port=port, user="alice", dbname="weir", connect_timeout=10)
    with psycopg.connect(password="Al1ce pw", sslmode="require", **kw) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match=WRONG) as e:
        psycopg.connect(password="wrong", **kw)
    assert e.value.sqlstate in (None, "28P01")


def test_psycopg2_right_and_wrong_password(tls_server):
    port, _ = tls_server
    kw = dict(host="127.0.0.1", port=port, user="alice", dbname="weir", connect_timeout=10)
    conn = psycopg2.connect(password="Al1ce pw", **kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError, match=WRONG):
        psycopg2.connect(password="wrong", **kw)


def test_asyncpg_right_and_wrong_password(tls_server):
    port, _ = tls_server

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="alice", database="weir",
                                     password="Al1ce pw", ssl=False)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError, match=WRONG):
            await asyncpg.connect(host="127.0.0.1", port=port, user="alice", database="weir",
                                  password="wrong", ssl=False)

    asyncio.run(run())


def test_tls_required_refuses_plain_text(required_server):
    port, _ = required_server
    kw = dict(host="127.0.0.1", port=port, user="anyone", dbname="weir", password="shared pw",
              connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="SSL/TLS is required") as e:
        psycopg.connect(sslmode="disable", **kw)
    assert e.value.sqlstate in (None, "28000")
    with psycopg.connect(sslmode="require", **kw) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    if PSQL is not None:
        proc = psql(port, "shared pw", "-c", "SELECT 1", sslmode="disable", user="anyone")
        assert proc.returncode != 0 and "SSL/TLS is required" in proc.stderr, proc.stderr
        proc = psql(port, "shared pw", "-c", "SELECT 1", sslmode="require", user="anyone")
        assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr
