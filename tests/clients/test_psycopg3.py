"""psycopg 3: simple protocol without parameters, unnamed extended protocol with them, named
prepared statements (prepare=True, or the same statement run past prepare_threshold), binary
results and parameters, and server-side (named) cursors."""

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import psycopg
import psycopg.errors
import pytest
from psycopg import pq

from expected import OID, TYPED_COLUMNS, TYPED_OIDS, TYPED_ROWS, TYPED_SELECT, TYPED_TEXT, assert_typed_rows


@pytest.fixture
def conn(weir):
    with psycopg.connect(**weir.psycopg_kwargs(application_name="weir-tests-psycopg3")) as c:
        yield c


def test_connection_info(conn):
    assert conn.info.server_version // 10000 == 16, conn.info.server_version
    assert conn.info.parameter_status("server_version").startswith("16.")
    assert conn.info.encoding == "utf-8"
    assert conn.info.dbname == "weir"


def test_simple_protocol_several_statements(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS a; SELECT 'two' AS b, 2.5::float8 AS c; SELECT id FROM typed ORDER BY id")
        assert [d.name for d in cur.description] == ["a"]
        assert cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert [d.name for d in cur.description] == ["b", "c"]
        assert cur.fetchall() == [("two", 2.5)]
        assert cur.nextset()
        assert cur.fetchall() == [(1,), (2,), (3,), (4,)]
        assert not cur.nextset()


def test_text_results_without_parameters(conn):
    with conn.cursor() as cur:
        cur.execute(TYPED_SELECT)
        for d in cur.description:
            assert d.type_code in TYPED_OIDS[d.name], f"{d.name}: type OID {d.type_code}"
        assert_typed_rows(cur.fetchall())


def test_extended_protocol_with_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT label, amount FROM typed WHERE id = %s", (1,))
        assert cur.fetchall() == [("alpha", Decimal("1234.567"))]
        cur.execute("SELECT id FROM typed WHERE label = %s", ("béta, with comma",))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE day = %s", (dt.date(1970, 1, 1),))
        assert cur.fetchall() == [(3,)]
        cur.execute("SELECT id FROM typed WHERE ts = %s", (dt.datetime(2026, 11, 21, 23, 59, 59, 500000),))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE tstz = %s", (dt.datetime(2026, 11, 21, 10, 15, tzinfo=dt.timezone.utc),))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT id FROM typed WHERE amount < %s ORDER BY id", (Decimal("0.5"),))
        assert cur.fetchall() == [(2,), (3,)]
        cur.execute("SELECT id FROM typed WHERE flag = %s ORDER BY id", (False,))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE big = %s", (9007199254740993,))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT %s::text AS t, %s::int4 AS i", ("it's", None))
        assert cur.fetchone() == ("it's", None)
        cur.execute("SELECT city, amount FROM paris_sales WHERE amount > %s ORDER BY amount", (Decimal("50"),))
        assert cur.fetchall() == [("Paris", Decimal("89.90")), ("Paris", Decimal("120.50"))]


def test_prepare_true_uses_named_statement(conn):
    query = "SELECT label FROM typed WHERE id = %s"
    with conn.cursor() as cur:
        for i, want in [(1, "alpha"), (2, "béta, with comma"), (3, ""), (4, None), (1, "alpha")]:
            cur.execute(query, (i,), prepare=True)
            assert cur.fetchall() == [(want,)]


def test_repeated_statement_is_prepared_after_threshold(conn):
    assert conn.prepare_threshold is not None
    query = "SELECT id, amount FROM typed WHERE id <= %s ORDER BY id"
    with conn.cursor() as cur:
        for n in range(conn.prepare_threshold + 3):
            limit = n % 4 + 1
            cur.execute(query, (limit,))
            rows = cur.fetchall()
            assert rows == [(r[0], r[5]) for r in TYPED_ROWS[:limit]], f"run {n}"


def test_prepared_statement_without_parameters(conn):
    with conn.cursor() as cur:
        for _ in range(3):
            cur.execute("SELECT count(*) FROM sales", prepare=True)
            assert cur.fetchone() == (5,)


def test_binary_results(conn):
    with conn.cursor(binary=True) as cur:
        cur.execute(TYPED_SELECT)
        assert cur.pgresult.fformat(0) == pq.Format.BINARY
        for d in cur.description:
            assert d.type_code in TYPED_OIDS[d.name], f"{d.name}: type OID {d.type_code}"
        assert_typed_rows(cur.fetchall())


def test_binary_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT label FROM typed WHERE id = %b", (2,))
        assert cur.fetchall() == [("béta, with comma",)]
        cur.execute("SELECT id FROM typed WHERE tstz = %b", (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc),))
        assert cur.fetchall() == [(3,)]
        cur.execute("SELECT id FROM typed WHERE amount = %b", (Decimal("-0.001"),))
        assert cur.fetchall() == [(2,)]
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT id, day FROM typed WHERE day > %b ORDER BY id", (dt.date(1999, 1, 1),), prepare=True)
        assert cur.fetchall() == [(1, dt.date(2026, 11, 21)), (2, dt.date(1999, 12, 31))]


def test_raw_text_format_of_typed_rows(conn):
    # What simple-protocol clients (psql, Grafana, lib/pq, pgx) parse: PostgreSQL's own text output.
    res = conn.pgconn.exec_(TYPED_SELECT.encode())
    assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
    for row, want in enumerate(TYPED_TEXT):
        got = [None if res.get_value(row, c) is None else res.get_value(row, c).decode() for c in range(res.nfields)]
        for name, g, w in zip(TYPED_COLUMNS, got, want):
            if name in {"real_val", "double_val"} and g is not None and w is not None:
                assert float(g) == float(w), f"{name} of id={want[0]}: {g!r}"
            elif name == "amount" and g is not None and w is not None:
                assert Decimal(g) == Decimal(w), f"{name} of id={want[0]}: {g!r}"
            else:
                assert g == w, f"{name} of id={want[0]}: text {g!r}, PostgreSQL sends {w!r}"
    assert res.ftype(TYPED_COLUMNS.index("ts")) == OID["timestamp"]
    assert res.ftype(TYPED_COLUMNS.index("tstz")) == OID["timestamptz"]


def test_comment_only_query_is_an_empty_query(conn):
    res = conn.pgconn.exec_(b"-- ping")
    assert res.status == pq.ExecStatus.EMPTY_QUERY, (res.status, res.error_message)
    res = conn.pgconn.exec_(b"")
    assert res.status == pq.ExecStatus.EMPTY_QUERY, (res.status, res.error_message)


SERVER_CURSOR_SCRIPT = """
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user="tester", dbname="weir") as conn:
    with conn.cursor(name="weir_cursor") as cur:
        cur.itersize = 2
        cur.execute("SELECT id, label FROM typed ORDER BY id")
        print(repr([tuple(r) for r in cur]))
    conn.commit()
"""

SERVER_CURSOR_PARAMS_SCRIPT = """
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user="tester", dbname="weir") as conn:
    with conn.cursor(name="weir_cursor_params") as cur:
        cur.execute("SELECT id FROM typed WHERE id > %s ORDER BY id", (1,))
        print(repr(cur.fetchmany(2)))
        print(repr(cur.fetchone()))
        print(repr(cur.fetchone()))
    conn.commit()
"""


def run_isolated(weir, script):
    # psycopg decodes FETCH results with the columns the Describe announced, and crashes
    # (SIGSEGV) if they disagree, hence a separate process.
    proc = subprocess.run(
        [sys.executable, "-c", script, weir.host, str(weir.port)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"named cursor failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout.splitlines()


def test_server_side_cursor_with_itersize(weir):
    # A named cursor is DECLARE ... CURSOR FOR ..., Describe of that portal, then
    # FETCH FORWARD n, inside a transaction.
    assert run_isolated(weir, SERVER_CURSOR_SCRIPT) == [repr([(r[0], r[6]) for r in TYPED_ROWS])]


@pytest.mark.xfail(strict=True, reason="server-side cursors over a query with parameters are not supported yet")
def test_server_side_cursor_with_parameters(weir):
    assert run_isolated(weir, SERVER_CURSOR_PARAMS_SCRIPT) == [repr([(2,), (3,)]), repr((4,)), repr(None)]


def test_declared_cursor_portal_is_described_and_fetched(conn):
    # The protocol steps under a named cursor, checked one by one.
    pg = conn.pgconn
    assert pg.exec_(b"BEGIN").status == pq.ExecStatus.COMMAND_OK
    res = pg.exec_params(b'DECLARE "weir_c" CURSOR FOR SELECT id, label FROM typed ORDER BY id', [])
    assert res.status == pq.ExecStatus.COMMAND_OK, res.error_message
    desc = pg.describe_portal(b"weir_c")
    assert desc.status == pq.ExecStatus.COMMAND_OK, desc.error_message
    assert [desc.fname(i) for i in range(desc.nfields)] == [b"id", b"label"], "Describe of the cursor's portal"
    fetched = pg.exec_(b'FETCH FORWARD 3 FROM "weir_c"')
    assert fetched.status == pq.ExecStatus.TUPLES_OK, fetched.error_message
    assert (fetched.nfields, fetched.ntuples) == (2, 3)
    assert [fetched.get_value(i, 0) for i in range(3)] == [b"1", b"2", b"3"]
    fetched = pg.exec_(b'FETCH FORWARD 3 FROM "weir_c"')
    assert fetched.ntuples == 1 and fetched.get_value(0, 1) is None
    assert pg.exec_(b'CLOSE "weir_c"').status == pq.ExecStatus.COMMAND_OK
    assert pg.exec_(b"COMMIT").status == pq.ExecStatus.COMMAND_OK


def test_errors_over_extended_protocol_leave_connection_usable(conn):
    with conn.cursor() as cur:
        with pytest.raises(psycopg.errors.UndefinedTable) as info:
            cur.execute("SELECT * FROM no_such_table WHERE x = %s", (1,))
        assert info.value.sqlstate == "42P01"
    conn.rollback()
    with conn.cursor() as cur:
        with pytest.raises(psycopg.errors.UndefinedColumn) as info:
            cur.execute("SELECT no_such_column FROM typed WHERE id = %s", (1,))
        assert info.value.sqlstate == "42703"
    conn.rollback()
    with conn.cursor() as cur:
        with pytest.raises(psycopg.errors.SyntaxError) as info:
            cur.execute("SELEC %s", (1,))
        assert info.value.sqlstate == "42601"
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT label FROM typed WHERE id = %s", (1,))
        assert cur.fetchall() == [("alpha",)]


def test_autocommit_connection(weir):
    with psycopg.connect(**weir.psycopg_kwargs(), autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM products WHERE active").fetchone() == (9,)
        assert c.execute("SELECT count(*) FROM products WHERE category = %s", ("Books",)).fetchone() == (2,)
        assert c.info.transaction_status == pq.TransactionStatus.IDLE
