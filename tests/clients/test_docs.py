"""The documentation's examples, run against the demo so that they cannot drift.

Serves the demo folder sql/ (not the fixtures of conftest.py) on free loopback ports and
runs, file by file and in order, the fenced blocks of README.md, CONTRIBUTING.md and
docs/*.md:

- `sql` blocks statement by statement through psql (ON_ERROR_STOP); a SUBSCRIBE goes
  through psycopg 3 instead, until its first row arrives, since psql would wait for the
  subscription to end;
- `sh` and `console` blocks (for `console`, the lines after `$ `): each command must be
  psql, curl or `weir check`, and runs with the test server's ports in place of the
  defaults and its binary as `weir`; a `console` block's output lines (but those with
  `…`) must appear in the real output.

A block that cannot run against the demo says so in its info string: ```sql no-run (why).
Those are reported as skipped; any other block that fails, or that runs something else,
fails the test.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from conftest import ROOT, _die_with_parent, _free_ports, _healthz, weir_binary

DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"sql", "sh", "bash", "shell", "console"}
# Files the examples write (COPY, Parquet sinks); emptied before and after the run.
SCRATCH = Path("/tmp/weir-docs")
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 120.0
# How long a SUBSCRIBE may take to deliver its first row.
SUBSCRIBE_TIMEOUT = "60s"
DEFAULT_PG_PORT, DEFAULT_HTTP_PORT = 5433, 8080


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    no_run: str | None  # the reason given, when marked no-run
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file whose language is one the test runs."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, info = m.group(1), m.group(2).strip()
        start = i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        words = info.split(None, 1)
        lang = words[0].lower() if words else ""
        if lang not in RUN_LANGS:
            continue
        rest = words[1].strip() if len(words) > 1 else ""
        no_run = None
        if rest:
            if not rest.startswith("no-run"):
                raise ValueError(f"{path}:{start + 1}: unknown fence option {rest!r} (only 'no-run (reason)')")
            no_run = rest[len("no-run"):].strip().strip("()") or "no reason given"
        out.append(Block(path, start + 1, lang, no_run, "\n".join(body) + "\n"))
    return out


ALL_BLOCKS = {path: blocks_of(path) for path in DOCS}


def split_sql(text: str) -> list[str]:
    """Statements of a script, without their semicolons; quotes and comments respected."""
    statements, current, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            current.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            current.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            current.append(text[i:j])
            i = j
        elif c == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    statements.append("".join(current))
    return [s for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.S)


@dataclasses.dataclass(frozen=True)
class Demo:
    pg_port: int
    http_port: int
    env: dict
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    binary = weir_binary()
    if not binary.exists():
        message = f"server binary {binary} not found; build it (cargo build) or set WEIR_BIN"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    shutil.rmtree(SCRATCH, ignore_errors=True)
    work = tmp_path_factory.mktemp("docs")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "weir").symlink_to(binary.resolve())
    log_path = work / "weir-server.log"
    pg_port, http_port, flight_port = _free_ports(3)
    cmd = [
        str(binary), "serve",
        "--sql-dir", str(ROOT / "sql"),
        "--pg-listen", f"127.0.0.1:{pg_port}",
        "--http-listen", f"127.0.0.1:{http_port}",
        "--flight-listen", f"127.0.0.1:{flight_port}",
        "--data-dir", str(work / "data"),
        # The documentation's examples write under /tmp/weir-docs, as it says to allow.
        "--storage-allowed-locations", str(SCRATCH),
    ]
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("PG", "WEIR_"))]:
        del env[key]
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PSQLRC="/dev/null",
               PGCONNECT_TIMEOUT="10", PAGER="cat", PGUSER="tester", PGDATABASE="weir")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, preexec_fn=_die_with_parent if os.name == "posix" else None,
    )
    server = Demo(pg_port=pg_port, http_port=http_port, env=env, log_path=log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _healthz(http_port):
            if proc.poll() is not None:
                pytest.fail(f"weir exited with code {proc.returncode} before it was ready\n"
                            f"command: {' '.join(cmd)}\n{server.log_tail()}", pytrace=False)
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
        shutil.rmtree(SCRATCH, ignore_errors=True)
    assert proc.returncode == 0, f"weir exited with {proc.returncode} after SIGTERM\n{server.log_tail()}"


def on_demo(demo: Demo, command: str) -> str:
    """A documented command pointed at the test server."""
    for old, new in [
        (f"127.0.0.1:{DEFAULT_PG_PORT}", f"127.0.0.1:{demo.pg_port}"),
        (f"localhost:{DEFAULT_PG_PORT}", f"127.0.0.1:{demo.pg_port}"),
        (f"127.0.0.1:{DEFAULT_HTTP_PORT}", f"127.0.0.1:{demo.http_port}"),
        (f"localhost:{DEFAULT_HTTP_PORT}", f"127.0.0.1:{demo.http_port}"),
    ]:
        command = command.replace(old, new)
    command = re.sub(rf"(-p\s*){DEFAULT_PG_PORT}\b", rf"\g<1>{demo.pg_port}", command)
    command = re.sub(rf"\bport={DEFAULT_PG_PORT}\b", f"port={demo.pg_port}", command)
    return command


def check_runnable(block: Block, command: str) -> None:
    words = shlex.split(command, comments=True)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    ok = bool(words) and (words[0] in ("psql", "curl") or words[:2] == ["weir", "check"])
    if not ok:
        pytest.fail(f"{block.where}: `{command}` is not a psql, curl or weir check command the test "
                    f"can run against the demo; mark the block no-run (with the reason)", pytrace=False)


def run_shell(demo: Demo, block: Block, command: str) -> str:
    check_runnable(block, command)
    real = on_demo(demo, command)
    try:
        done = subprocess.run(["bash", "-c", real], cwd=ROOT, env=demo.env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: `{command}` did not finish within {COMMAND_TIMEOUT_S:.0f}s", pytrace=False)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"{block.where}: `{command}` (run as `{real}`) exited with {done.returncode}\n"
                    f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nserver log:\n{demo.log_tail()}",
                    pytrace=False)
    return done.stdout


def shell_commands(text: str) -> list[str]:
    """The commands of an `sh` block: comment lines skipped, `\\` continuations joined."""
    commands, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        commands.append(current + line)
        current = ""
    if current:
        commands.append(current)
    return commands


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """The `$ command` lines of a `console` block, each with the output lines shown."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out and line.strip():
            out[-1][1].append(line.strip())
    return out


def run_psql(demo: Demo, block: Block, script: str) -> None:
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(demo.pg_port),
           "-U", "tester", "-d", "weir", "-f", "-"]
    try:
        done = subprocess.run(cmd, input=script, cwd=ROOT, env=demo.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: psql did not finish within {COMMAND_TIMEOUT_S:.0f}s:\n{script}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{block.where}: psql exited with {done.returncode} on\n{script}\n"
                    f"stderr:\n{done.stderr}\nserver log:\n{demo.log_tail()}", pytrace=False)


def run_subscribe(demo: Demo, block: Block, statement: str) -> None:
    """Follow the subscription until its first row, then cancel it."""
    with psycopg.connect(host="127.0.0.1", port=demo.pg_port, user="tester", dbname="weir",
                         autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SET statement_timeout = '{SUBSCRIBE_TIMEOUT}'")
        with conn.cursor() as cur:
            stream = cur.stream(statement)
            try:
                first = next(stream)
            except psycopg.Error as e:
                pytest.fail(f"{block.where}: {statement.strip()} failed: {e.sqlstate} {e}", pytrace=False)
            except StopIteration:
                pytest.fail(f"{block.where}: {statement.strip()} ended without a row", pytrace=False)
            assert first[1] in ("insert", "delete"), f"{block.where}: weir_op is {first[1]!r}"
            conn.cancel_safe()
            with pytest.raises(psycopg.errors.QueryCanceled):
                for _ in stream:
                    pass


def run_sql(demo: Demo, block: Block) -> int:
    """Run a block's statements; returns how many ran."""
    statements = split_sql(block.text)
    pending: list[str] = []

    def flush():
        if pending:
            # The semicolon on a line of its own: a statement may end in a comment.
            run_psql(demo, block, "".join(s.strip() + "\n;\n" for s in pending))
            pending.clear()

    for statement in statements:
        if re.match(r"\s*SUBSCRIBE\b", strip_comments(statement), re.I):
            flush()
            run_subscribe(demo, block, statement)
        else:
            pending.append(statement)
    flush()
    return len(statements)


def run_block(demo: Demo, block: Block) -> None:
    if block.lang == "sql":
        assert run_sql(demo, block) > 0, f"{block.where}: an empty sql block"
    elif block.lang == "console":
        commands = console_commands(block.text)
        assert commands, f"{block.where}: a console block without `$ ` commands"
        for command, shown in commands:
            output = {line.strip() for line in run_shell(demo, block, command).splitlines()}
            for line in shown:
                if "…" not in line:
                    assert line in output, (f"{block.where}: `{command}` did not print {line!r}; "
                                            f"it printed:\n" + "\n".join(sorted(output)))
    else:
        commands = shell_commands(block.text)
        assert commands, f"{block.where}: an empty shell block"
        for command in commands:
            run_shell(demo, block, command)


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_examples_run_against_the_demo(demo, path):
    ran = [b for b in ALL_BLOCKS[path] if b.no_run is None]
    for block in ran:
        run_block(demo, block)
    print(f"{path.relative_to(ROOT)}: {len(ran)} blocks run, "
          f"{len(ALL_BLOCKS[path]) - len(ran)} marked no-run")


NO_RUN = [b for path in DOCS for b in ALL_BLOCKS[path] if b.no_run is not None]


@pytest.mark.parametrize("block", NO_RUN, ids=[b.where for b in NO_RUN])
def test_blocks_marked_no_run(block):
    pytest.skip(f"{block.where} ({block.lang}): {block.no_run}")


def test_every_serve_flag_is_documented():
    """The configuration table of docs/operations.md names every flag of `weir serve`."""
    binary = weir_binary()
    if not binary.exists():
        message = f"server binary {binary} not found; build it (cargo build) or set WEIR_BIN"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    text = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    flags = set(re.findall(r"--([a-z][a-z-]+)", text)) - {"help", "version"}
    page = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(f for f in flags if not re.search(rf"--{f}(?![a-z-])", page))
    assert not missing, f"docs/operations.md does not document: {', '.join('--' + f for f in missing)}"


def test_the_docs_have_examples_to_run():
    for path in DOCS:
        assert path.exists(), path
    assert sum(b.no_run is None for blocks in ALL_BLOCKS.values() for b in blocks) >= 20
