"""The real psql binary: its describe commands (\\d, \\dt, \\dv, \\d name, \\l) and plain queries.

psql chooses its catalog queries from the server_version the server reports, so these run the
queries a PostgreSQL 16 server would get.
"""

import os
import re
import shutil
import subprocess
from decimal import Decimal

import pytest

from expected import TABLES, TYPED_COLUMNS, TYPED_FORMAT_TYPE, TYPED_TEXT, VIEWS

PSQL = shutil.which("psql")
pytestmark = pytest.mark.skipif(PSQL is None, reason="psql not installed (scripts/setup.sh installs it)")

NULL = "<NULL>"


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def run_psql(weir, *args, user="anyuser", dbname="anydb", unaligned=True):
    cmd = [PSQL, "-h", weir.host, "-p", str(weir.port), "-X", "-v", "ON_ERROR_STOP=1"]
    if user is not None:
        cmd += ["-U", user]
    if dbname is not None:
        cmd += ["-d", dbname]
    if unaligned:
        cmd += ["-A", "-t", "-F", "|", "-P", f"null={NULL}"]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, (
        f"psql {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
    )
    assert "ERROR" not in proc.stderr, f"psql {' '.join(args)} reported:\n{proc.stderr}"
    return proc.stdout


def rows(output):
    return [line.split("|") for line in output.splitlines() if line.strip()]


def relations(weir, command):
    """{name: type} from \\d, \\dt or \\dv output (Schema|Name|Type|Owner)."""
    out = run_psql(weir, "-c", command)
    found = {}
    for r in rows(out):
        assert len(r) >= 4, f"unexpected {command} line: {r}"
        schema, name, kind = r[0], r[1], r[2]
        assert schema == "public", f"{command}: {name} listed in schema {schema!r}"
        found[name] = kind
    return found


def test_bare_connection_without_user_or_database(weir):
    out = run_psql(weir, "-c", "select 1", user=None, dbname=None, unaligned=False)
    assert re.search(r"^\s*1\s*$", out, re.M), out
    assert "(1 row)" in out, out


def test_select_version_and_settings(weir):
    out = run_psql(weir, "-c", "select version()")
    assert re.search(r"PostgreSQL \d+\.\d+", out), out
    out = run_psql(weir, "-c", "show server_version")
    assert out.strip().startswith("16."), out


def test_backslash_d_lists_tables_and_views(weir):
    found = relations(weir, r"\d")
    for t in TABLES:
        assert found.get(t) == "table", f"\\d: {t} -> {found.get(t)!r}; all: {found}"
    for v in VIEWS:
        assert found.get(v) == "view", f"\\d: {v} -> {found.get(v)!r}; all: {found}"


def test_backslash_dt_lists_only_tables(weir):
    found = relations(weir, r"\dt")
    assert TABLES <= set(found), found
    assert not VIEWS & set(found), f"\\dt lists views: {found}"
    assert set(found.values()) == {"table"}, found


def test_backslash_dv_lists_only_views(weir):
    found = relations(weir, r"\dv")
    assert VIEWS <= set(found), found
    assert not TABLES & set(found), f"\\dv lists tables: {found}"
    assert set(found.values()) == {"view"}, found


def describe_columns(weir, name):
    out = run_psql(weir, "-c", rf"\d {name}")
    cols = []
    for r in rows(out):
        # Column|Type|Collation|Nullable|Default; tuples-only output has no title or footers.
        assert len(r) >= 2, f"unexpected \\d {name} line: {r}"
        cols.append((r[0], r[1]))
    return cols


def test_backslash_d_typed_shows_columns_and_types(weir):
    cols = describe_columns(weir, "typed")
    assert [c for c, _ in cols] == TYPED_COLUMNS, cols
    for col, typ in cols:
        assert typ in TYPED_FORMAT_TYPE[col], f"\\d typed: {col} shown as {typ!r}, expected one of {TYPED_FORMAT_TYPE[col]}"


def test_backslash_d_sales_and_view(weir):
    sales = describe_columns(weir, "sales")
    assert [c for c, _ in sales] == ["city", "category", "amount", "dt"], sales
    types = dict(sales)
    assert types["city"] in {"text", "character varying"}, sales
    assert types["amount"] in {"numeric(10,2)", "numeric"}, sales
    view = describe_columns(weir, "paris_sales")
    assert [c for c, _ in view] == ["city", "category", "amount", "dt"], view


def test_backslash_l_lists_weir(weir):
    out = run_psql(weir, "-c", r"\l")
    names = [r[0] for r in rows(out)]
    assert "weir" in names, out


def test_select_typed_values_as_text(weir):
    out = run_psql(weir, "-c", "SELECT " + ", ".join(TYPED_COLUMNS) + " FROM typed ORDER BY id")
    got = [[None if v == NULL else v for v in r] for r in rows(out)]
    assert len(got) == len(TYPED_TEXT), out
    for g, w in zip(got, TYPED_TEXT):
        assert len(g) == len(w), f"row {g}"
        for name, gv, wv in zip(TYPED_COLUMNS, g, w):
            where = f"typed.{name} of id={w[0]}"
            if wv is None or name not in {"real_val", "double_val", "amount"}:
                assert gv == wv, f"{where}: psql shows {gv!r}, PostgreSQL shows {wv!r}"
            elif name == "amount":
                assert Decimal(gv) == Decimal(wv), f"{where}: {gv!r} != {wv!r}"
            else:
                assert float(gv) == float(wv), f"{where}: {gv!r} != {wv!r}"


def test_select_from_view_and_aggregate(weir):
    out = run_psql(weir, "-c", "SELECT city, amount, dt FROM paris_sales ORDER BY amount")
    assert rows(out) == [["Paris", "22.40", "2026-11-20"], ["Paris", "89.90", "2026-11-21"], ["Paris", "120.50", "2026-11-20"]], out
    out = run_psql(weir, "-c", "SELECT dt, count(*), sum(amount) FROM sales GROUP BY dt ORDER BY dt")
    got = [(d, int(n), Decimal(s)) for d, n, s in rows(out)]
    assert got == [("2026-11-20", 3, Decimal("157.90")), ("2026-11-21", 2, Decimal("208.90"))], out


def test_several_statements_in_one_command(weir):
    out = run_psql(weir, "-c", "SELECT 1 AS a; SELECT 'two' AS b")
    # psql -c with several statements prints each result.
    assert rows(out) == [["1"], ["two"]], out
