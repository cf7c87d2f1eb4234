"""The queries Grafana's PostgreSQL data source sends, over the simple query protocol with text
results, as its pgx back end does (PgConn.Exec). Grafana maps result columns through pgx's
type map, so a column with an OID pgx does not know fails the whole panel, and it parses
timestamps from PostgreSQL's text format.

Sources: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
(config page, table and column pickers), public/app/plugins/datasource/postgres/meta_query.ts
(the older query builder), pkg/tsdb/grafana-postgresql-datasource/macros.go (panel macros).
"""

import datetime as dt

import psycopg
import pytest
from psycopg import pq

from expected import OID, TABLES, TYPED_COLUMNS, TYPED_INFORMATION_SCHEMA_TYPE, VIEWS

UTC = dt.timezone.utc

SEARCH_PATH_SCHEMAS = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""

VERSION = "SELECT current_setting('server_version_num')::int/100 as version"

TIMESCALEDB = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"

SCHEMAS = """SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"""

TABLES_IN_SEARCH_PATH = f"""SELECT
    CASE WHEN {SEARCH_PATH_SCHEMAS}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {SEARCH_PATH_SCHEMAS} THEN 0 ELSE 1 END, 1"""

TABLES_IN_SCHEMA = """SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1"""


def columns_query(table):
    lit = "'" + table.replace("'", "''") + "'"
    return f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({lit}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({lit}))[1]
          AND quote_ident(table_name) = (parse_ident({lit}))[2]
        ELSE quote_ident(table_name) = {lit}
          AND {SEARCH_PATH_SCHEMAS}
      END"""


LEGACY_SCHEMA_CONSTRAINT = """
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
)"""

LEGACY_TABLES = (
    "SELECT quote_ident(table_name) FROM information_schema.tables WHERE "
    + LEGACY_SCHEMA_CONSTRAINT + " ORDER BY table_name"
)

LEGACY_TIME_COLUMNS = (
    "SELECT quote_ident(column_name) FROM information_schema.columns WHERE "
    + LEGACY_SCHEMA_CONSTRAINT + " AND table_name = 'typed'"
    + " AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real')"
    + " ORDER BY column_name"
)

LEGACY_FIND_METRIC_TABLE = f"""
SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE {LEGACY_SCHEMA_CONSTRAINT} AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;"""

# Type OIDs pgx's default type map knows; anything else fails a Grafana panel.
PGX_KNOWN_OIDS = {16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 600, 601, 602, 603, 604, 628, 650,
                  700, 701, 718, 774, 790, 829, 869, 1000, 1001, 1002, 1005, 1007, 1009, 1014, 1015,
                  1016, 1021, 1022, 1028, 1041, 1042, 1043, 1082, 1083, 1114, 1115, 1182, 1184, 1185,
                  1186, 1231, 1266, 1560, 1562, 1700, 2249, 2950, 2951, 3614, 3802, 3807, 3904, 3906,
                  3908, 3910, 3912, 3926, 4072, 4073}


@pytest.fixture(scope="module")
def conn(weir):
    with psycopg.connect(**weir.psycopg_kwargs(application_name="weir-tests-grafana"), autocommit=True) as c:
        yield c


class Result:
    def __init__(self, res):
        self.names = [res.fname(i).decode() for i in range(res.nfields)]
        self.oids = [res.ftype(i) for i in range(res.nfields)]
        self.rows = [
            [None if res.get_value(r, c) is None else res.get_value(r, c).decode() for c in range(res.nfields)]
            for r in range(res.ntuples)
        ]

    def column(self, name):
        i = self.names.index(name)
        return [r[i] for r in self.rows]


def simple(conn, sql):
    """Run sql as one simple-protocol Query message (PQexec) and return its text result."""
    res = conn.pgconn.exec_(sql.encode())
    assert res.status == pq.ExecStatus.TUPLES_OK, (
        f"query failed ({pq.ExecStatus(res.status).name}): {res.error_message.decode(errors='replace')}\n{sql}"
    )
    out = Result(res)
    unknown = [(n, o) for n, o in zip(out.names, out.oids) if o not in PGX_KNOWN_OIDS]
    assert not unknown, f"column type OIDs Grafana cannot map: {unknown}\n{sql}"
    return out


def test_health_check_ping_is_an_empty_query(conn):
    res = conn.pgconn.exec_(b"-- ping")
    assert res.status == pq.ExecStatus.EMPTY_QUERY, (pq.ExecStatus(res.status).name, res.error_message)
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_config_page_version(conn):
    r = simple(conn, VERSION)
    assert r.names == ["version"]
    assert r.oids[0] in {OID["int4"], OID["int8"]}
    version = int(r.rows[0][0])
    assert 1600 <= version < 1700, version


def test_config_page_timescaledb_lookup_is_empty(conn):
    r = simple(conn, TIMESCALEDB)
    assert r.names == ["extversion"]
    assert r.rows == []


def test_schema_list(conn):
    r = simple(conn, SCHEMAS)
    assert "public" in r.column("name"), r.rows
    assert "pg_catalog" not in r.column("name")


def test_table_picker_lists_tables_and_views(conn):
    r = simple(conn, TABLES_IN_SEARCH_PATH)
    listed = r.column("table")
    for name in TABLES | VIEWS:
        assert name in listed, f"table picker lacks {name}: {listed}"
    assert not any(name.startswith("pg_catalog.") or name.startswith("information_schema.") for name in listed)
    # Tables in the search path come first, unqualified.
    public = [t for t in listed if "." not in t]
    assert listed[: len(public)] == public == sorted(public)


def test_table_picker_for_a_schema(conn):
    r = simple(conn, TABLES_IN_SCHEMA)
    listed = r.column("table")
    assert TABLES | VIEWS <= set(listed), listed
    assert listed == sorted(listed)


@pytest.mark.parametrize("table", ["typed", "public.typed"])
def test_column_picker(conn, table):
    r = simple(conn, columns_query(table))
    assert r.names == ["column", "type"]
    got = dict(r.rows)
    assert sorted(got) == sorted(TYPED_COLUMNS), r.rows
    for name, typ in got.items():
        assert typ in TYPED_INFORMATION_SCHEMA_TYPE[name], f"{name}: data_type {typ!r}"


def test_column_picker_for_a_view(conn):
    r = simple(conn, columns_query("paris_sales"))
    assert sorted(c for c, _ in r.rows) == ["amount", "category", "city", "dt"], r.rows


def test_legacy_query_builder_tables_and_time_columns(conn):
    tables = simple(conn, LEGACY_TABLES).rows
    assert TABLES | VIEWS <= {t[0] for t in tables}, tables
    cols = [c[0] for c in simple(conn, LEGACY_TIME_COLUMNS).rows]
    # time candidates of typed: integer, bigint, real, double precision and both timestamps
    assert cols == sorted(["big", "double_val", "id", "real_val", "ts", "tstz"]), cols


@pytest.mark.xfail(strict=True, reason="the legacy query builder's metric-table query needs correlated scalar sub-queries with LIMIT, which the engine does not plan yet")
def test_legacy_query_builder_find_metric_table(conn):
    r = simple(conn, LEGACY_FIND_METRIC_TABLE)
    assert r.rows == [["typed", "ts", "double_val"]], r.rows


def test_time_series_panel_with_time_group(conn):
    # SELECT $__timeGroupAlias(ts,'5m'), count(*) AS "value" FROM typed
    # WHERE $__timeFilter(ts) GROUP BY 1 ORDER BY 1  -- range 2026-11-21 00:00 .. 2026-11-22 00:00 UTC
    r = simple(conn, """SELECT
  floor(extract(epoch from ts)/300)*300 AS "time",
  count(*) AS "value"
FROM typed
WHERE
  ts BETWEEN '2026-11-21T00:00:00Z' AND '2026-11-22T00:00:00Z'
GROUP BY 1
ORDER BY 1""")
    assert r.names == ["time", "value"]
    assert r.oids[0] in {OID["numeric"], OID["float8"], OID["int8"]}, r.oids
    assert r.oids[1] == OID["int8"], r.oids
    want = [
        (dt.datetime(2026, 11, 21, 10, 15, tzinfo=UTC).timestamp(), 1),
        (dt.datetime(2026, 11, 21, 23, 55, tzinfo=UTC).timestamp(), 1),
    ]
    assert [(float(t), int(v)) for t, v in r.rows] == want, r.rows


def test_table_panel_with_time_column(conn):
    # SELECT $__time(ts), id, amount, label FROM typed WHERE $__timeFilter(ts) ORDER BY 1
    r = simple(conn, """SELECT ts AS "time", id, amount, label
FROM typed
WHERE ts BETWEEN '2026-11-21T10:00:00Z' AND '2026-11-21T11:00:00Z'
ORDER BY 1""")
    assert r.names == ["time", "id", "amount", "label"]
    assert r.oids[0] == OID["timestamp"], r.oids
    assert r.rows == [["2026-11-21 10:15:00", "1", "1234.567", "alpha"]]


def test_table_panel_with_timestamptz(conn):
    r = simple(conn, """SELECT tstz AS "time", label
FROM typed
WHERE tstz BETWEEN '2026-11-21T10:00:00Z' AND '2026-11-21T11:00:00Z'
ORDER BY 1""")
    assert r.oids[0] == OID["timestamptz"], r.oids
    assert r.rows == [["2026-11-21 10:15:00+00", "alpha"]]
    r = simple(conn, """SELECT tstz AS "time", id
FROM typed
WHERE tstz BETWEEN '2000-02-29T00:00:00Z' AND '2000-03-01T00:00:00Z'""")
    assert r.rows == [["2000-02-29 12:00:00.25+00", "2"]]


def test_time_series_panel_with_metric_column(conn):
    # Long format with a metric column: one series per category, from the sales partitions.
    r = simple(conn, """SELECT
  dt::date::timestamp AS "time",
  category AS metric,
  sum(amount) AS "value"
FROM sales
GROUP BY 1, 2
ORDER BY 1, 2""")
    assert r.names == ["time", "metric", "value"]
    assert r.oids[0] == OID["timestamp"], r.oids
    got = [(t, m, float(v)) for t, m, v in r.rows]
    assert got == [
        ("2026-11-20 00:00:00", "Books", 37.4),
        ("2026-11-20 00:00:00", "Electronics", 120.5),
        ("2026-11-21 00:00:00", "Electronics", 89.9),
        ("2026-11-21 00:00:00", "Sports", 119.0),
    ], r.rows
