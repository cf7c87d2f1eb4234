"""Starts one `weir serve` for the whole client test session.

The server reads the SQL in tests/fixtures/sql, listens on free loopback ports and keeps its
state in a temporary directory. It is stopped with SIGTERM at the end of the session and
must exit 0.

Set WEIR_TEST_PG=host:port to run the suite against a server that is already running
(for example a real PostgreSQL loaded with the same fixtures, to check the tests
themselves); nothing is started or stopped then.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Weir:
    host: str
    port: int
    http_port: int | None
    log_path: Path | None
    dbname: str = "weir"
    user: str = "tester"
    # The Arrow Flight SQL port; None against an external PostgreSQL server (WEIR_TEST_PG).
    flight_port: int | None = None

    def psycopg_kwargs(self, **extra) -> dict:
        kw = dict(host=self.host, port=self.port, user=self.user, dbname=self.dbname, connect_timeout=10)
        kw.update(extra)
        return kw

    def url(self, scheme: str = "postgresql") -> str:
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no server log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _healthz(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _die_with_parent():
    """Have the kernel SIGTERM the server if this pytest process dies without tearing down."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def weir_binary() -> Path:
    raw = os.environ.get("WEIR_BIN", "target/debug/weir")
    path = Path(raw)
    if not path.is_absolute():
        path = ROOT / path
    return path


@pytest.fixture(scope="session")
def weir(tmp_path_factory) -> Weir:
    external = os.environ.get("WEIR_TEST_PG")
    if external:
        host, _, port = external.rpartition(":")
        yield Weir(host=host or "127.0.0.1", port=int(port), http_port=None, log_path=None)
        return

    binary = weir_binary()
    if not binary.exists():
        pytest.fail(f"server binary {binary} not found; build it or set WEIR_BIN", pytrace=False)

    data_dir = tmp_path_factory.mktemp("weir-data")
    log_path = data_dir.parent / "weir-server.log"
    pg_port, http_port, flight_port = _free_ports(3)
    cmd = [
        str(binary),
        "serve",
        "--sql-dir", str(ROOT / "tests/fixtures/sql"),
        "--pg-listen", f"127.0.0.1:{pg_port}",
        "--http-listen", f"127.0.0.1:{http_port}",
        "--flight-listen", f"127.0.0.1:{flight_port}",
        "--data-dir", str(data_dir),
        # The repository's fixtures and data, and the temporary folders the tests write into.
        "--storage-allowed-locations", f"{ROOT},{tempfile.gettempdir()}",
    ]
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if os.name == "posix" else None,
    )
    server = Weir(host="127.0.0.1", port=pg_port, http_port=http_port, log_path=log_path,
                  flight_port=flight_port)

    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while not _healthz(http_port):
            if proc.poll() is not None:
                pytest.fail(
                    f"weir exited with code {proc.returncode} before it was ready\n"
                    f"command: {' '.join(cmd)}\n{server.log_tail()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(f"weir not ready after {READY_TIMEOUT_S:.0f}s\n{server.log_tail()}", pytrace=False)
            time.sleep(0.1)  # readiness polling interval
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                log.close()
                pytest.fail(f"weir did not stop within {STOP_TIMEOUT_S:.0f}s of SIGTERM\n{server.log_tail()}")
        log.close()
    assert proc.returncode == 0, f"weir exited with {proc.returncode} after SIGTERM\n{server.log_tail()}"
