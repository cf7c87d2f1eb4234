"""psycopg2: simple query protocol only, parameters interpolated on the client, BEGIN sent
before the first statement while autocommit is off."""

import datetime as dt
from decimal import Decimal

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
import pytest

from expected import PARIS_SALES_BY_AMOUNT, TYPED_COLUMNS, TYPED_OIDS, TYPED_ROWS, TYPED_SELECT, assert_typed_rows


@pytest.fixture
def conn(weir):
    c = psycopg2.connect(**weir.psycopg_kwargs(application_name="weir-tests-psycopg2"))
    yield c
    c.close()


def test_connect_reports_a_postgres_16_server(conn):
    assert conn.server_version // 10000 == 16, conn.server_version
    assert conn.encoding == "UTF8"
    assert conn.autocommit is False
    with conn.cursor() as cur:
        cur.execute("SELECT version()")
        assert cur.fetchone()[0].startswith("PostgreSQL ")


def test_autocommit_off_opens_a_transaction(conn):
    assert conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    # psycopg2 sent BEGIN first; the server's ReadyForQuery must now say "in transaction".
    assert conn.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS
    conn.commit()
    assert conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE


def test_typed_values_and_python_types(conn):
    with conn.cursor() as cur:
        cur.execute(TYPED_SELECT)
        assert [d.name for d in cur.description] == TYPED_COLUMNS
        for d in cur.description:
            assert d.type_code in TYPED_OIDS[d.name], f"{d.name}: type OID {d.type_code}, expected {TYPED_OIDS[d.name]}"
        assert_typed_rows(cur.fetchall())
    conn.rollback()


def test_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT label FROM typed WHERE id = %s", (2,))
        assert cur.fetchall() == [("béta, with comma",)]
        cur.execute("SELECT id FROM typed WHERE label = %s", ("béta, with comma",))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE label = %(l)s OR id = %(i)s ORDER BY id", {"l": "alpha", "i": 3})
        assert cur.fetchall() == [(1,), (3,)]
        cur.execute("SELECT %s AS quoted", ("it's",))
        assert cur.fetchone() == ("it's",)
        cur.execute("SELECT id FROM typed WHERE day = %s", (dt.date(1999, 12, 31),))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE ts = %s", (dt.datetime(2026, 11, 21, 10, 15),))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT id FROM typed WHERE tstz = %s", (dt.datetime(2000, 2, 29, 12, 0, 0, 250000, tzinfo=dt.timezone.utc),))
        assert cur.fetchall() == [(2,)]
        cur.execute("SELECT id FROM typed WHERE amount > %s ORDER BY id", (Decimal("0"),))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT id FROM typed WHERE flag = %s ORDER BY id", (True,))
        assert cur.fetchall() == [(1,), (3,)]
        cur.execute("SELECT id FROM typed WHERE id IN %s ORDER BY id", ((1, 4),))
        assert cur.fetchall() == [(1,), (4,)]
        cur.execute("SELECT count(*) FROM typed WHERE small IS %s", (None,))
        assert cur.fetchone() == (1,)
    conn.rollback()


def test_unaliased_column_names_match_postgres(conn):
    # Applications read rows by column name (row["count"]), so expressions without an alias
    # must be named as PostgreSQL names them.
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), max(id), sum(amount), upper(min(label)), 1, 'x' FROM typed")
        assert [d.name for d in cur.description] == ["count", "max", "sum", "upper", "?column?", "?column?"]
        cur.execute("SELECT version(), current_database(), t.id, typed.label FROM typed t, typed WHERE t.id = 1 AND typed.id = 1")
        assert [d.name for d in cur.description] == ["version", "current_database", "id", "label"]
    conn.rollback()


def test_view(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT city, category, amount, dt FROM paris_sales ORDER BY amount")
        got = [(c, k, a, str(d)) for c, k, a, d in cur.fetchall()]
        assert got == PARIS_SALES_BY_AMOUNT
        assert all(isinstance(r[2], Decimal) for r in got)
    conn.rollback()


def _expect_error(conn, sql, exc_type, sqlstate):
    with conn.cursor() as cur:
        with pytest.raises(exc_type) as info:
            cur.execute(sql)
    assert info.value.pgcode == sqlstate, f"{sql!r}: SQLSTATE {info.value.pgcode}, expected {sqlstate}: {info.value}"
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM typed")
        assert cur.fetchone() == (len(TYPED_ROWS),)
    conn.rollback()


def test_undefined_table_then_connection_still_usable(conn):
    _expect_error(conn, "SELECT * FROM no_such_table", psycopg2.errors.UndefinedTable, "42P01")


def test_syntax_error(conn):
    _expect_error(conn, "SELEC 1", psycopg2.errors.SyntaxError, "42601")


def test_undefined_column(conn):
    _expect_error(conn, "SELECT no_such_column FROM typed", psycopg2.errors.UndefinedColumn, "42703")


def test_failed_transaction_refuses_statements_until_rollback(conn):
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.UndefinedTable):
            cur.execute("SELECT * FROM no_such_table")
    assert conn.get_transaction_status() == ext.TRANSACTION_STATUS_INERROR
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_autocommit_and_session_settings(weir):
    c = psycopg2.connect(**weir.psycopg_kwargs())
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SET application_name = 'weir-tests'")
            cur.execute("SHOW application_name")
            assert cur.fetchone() == ("weir-tests",)
            cur.execute("SELECT current_database(), current_schema()")
            assert cur.fetchone() == ("weir", "public")
        assert c.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE
    finally:
        c.close()
