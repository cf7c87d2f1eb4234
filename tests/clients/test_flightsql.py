"""Arrow Flight SQL from real clients: the ADBC Flight SQL driver's DB-API (queries with and
without parameters, the Arrow types of the fixture table, a materialized view, catalog
objects, table schemas, DDL, errors), pyarrow.flight with a Flight SQL command built by hand,
and password authentication against a server started with one.

Every test runs against the session's server (its --flight-listen port), but for the
authentication tests, which start their own.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import warnings
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import _free_port
from expected import TYPED_COLUMNS, TYPED_ROWS

pytestmark = pytest.mark.skipif(
    os.environ.get("WEIR_TEST_PG") is not None, reason="Flight SQL is Weir's own port"
)

UTC = dt.timezone.utc

# The Arrow type each column of tests/fixtures/data/typed comes back as.
TYPED_ARROW = {
    "id": pa.int32(),
    "small": pa.int16(),
    "big": pa.int64(),
    "real_val": pa.float32(),
    "double_val": pa.float64(),
    "amount": pa.decimal128(12, 3),
    "label": pa.string(),
    "flag": pa.bool_(),
    "day": pa.date32(),
    "ts": pa.timestamp("us"),
    "tstz": pa.timestamp("us", tz="UTC"),
}


def uri(port: int) -> str:
    return f"grpc://127.0.0.1:{port}"


@pytest.fixture
def conn(weir):
    with flight_sql.connect(uri(weir.flight_port), autocommit=True) as c:
        yield c


def test_connect_and_query_without_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one, 'two' AS two")
        table = cur.fetch_arrow_table()
    assert table.to_pylist() == [{"one": 1, "two": "two"}]
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Weir"
    assert info["vendor_version"]


def test_default_connect_warns_autocommit_only(weir):
    # Weir has no transactions: the DB-API's autocommit=False is refused with a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with flight_sql.connect(uri(weir.flight_port)) as c, c.cursor() as cur:
            cur.execute("SELECT 42 AS n")
            assert cur.fetchone() == (42,)
    assert any("autocommit" in str(w.message) for w in caught)


def test_typed_table_arrow_types_and_values(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM typed ORDER BY id")
        table = cur.fetch_arrow_table()
    assert table.column_names == TYPED_COLUMNS
    for name, arrow_type in TYPED_ARROW.items():
        assert table.schema.field(name).type == arrow_type, name
    rows = [tuple(r[c] for c in TYPED_COLUMNS) for r in table.to_pylist()]
    assert rows == TYPED_ROWS


def test_parameters_question_mark_and_dollar(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT id, label FROM typed WHERE id = ?", (2,))
        assert cur.fetch_arrow_table().to_pylist() == [{"id": 2, "label": "béta, with comma"}]
        cur.execute("SELECT id FROM typed WHERE label = $1 AND flag = $2", ("alpha", True))
        assert cur.fetchall() == [(1,)]
        # The same statement again with other values: prepared once, bound twice.
        for wanted in (1, 3):
            cur.execute("SELECT small FROM typed WHERE id = ?", (wanted,))
            assert cur.fetchall() == [(TYPED_ROWS[wanted - 1][1],)]
        cur.execute("SELECT ? + 1 AS n", (41,))
        assert cur.fetchall() == [(42,)]
        # A parameter the query leaves untyped takes the type of its value.
        cur.execute("SELECT ? AS x", ("text",))
        assert cur.fetchall() == [("text",)]
        cur.execute("SELECT count(*) AS n FROM sales WHERE city = ? AND amount > ?", ("Paris", Decimal("50")))
        paris = cur.fetchall()[0][0]
        assert paris > 0


def test_parameters_of_the_wrong_type_or_count(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT id FROM typed WHERE id = ?", ("not a number",))
            cur.fetchall()
        assert "parameter $1" in str(err.value)
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT id FROM typed WHERE id = ? AND label = ?", (1,))
            cur.fetchall()
        assert "takes 2 parameter(s), 1 were bound" in str(err.value)
        # The connection goes on.
        cur.execute("SELECT 1 AS ok")
        assert cur.fetchall() == [(1,)]


def test_materialized_view(conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SOURCE flight_orders (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ("
            "connector = 'datagen', profile = 'orders', seed = '7', rate = 'unlimited', count = '2000', "
            "start = '2026-01-01 00:00:00', 'max.out.of.order.ms' = '1000')"
        )
        cur.execute(
            "CREATE MATERIALIZED VIEW flight_orders_per_minute AS "
            "SELECT window_start, count(*) AS orders FROM TUMBLE(flight_orders, ts, INTERVAL '1' MINUTE) "
            "GROUP BY window_start, window_end"
        )
        cur.execute("FLUSH")
        try:
            cur.execute("SELECT * FROM flight_orders_per_minute ORDER BY window_start")
            table = cur.fetch_arrow_table()
            assert table.schema.field("window_start").type == pa.timestamp("us")
            assert pa.types.is_integer(table.schema.field("orders").type)
            assert sum(table.column("orders").to_pylist()) == 2000
            # Weir's own statements that return rows.
            cur.execute("SHOW MATERIALIZED VIEWS")
            views = cur.fetch_arrow_table().to_pylist()
            assert [v["name"] for v in views] == ["flight_orders_per_minute"]
            cur.execute("SHOW SOURCES")
            assert "flight_orders" in [s["name"] for s in cur.fetch_arrow_table().to_pylist()]
            cur.execute("SHOW TABLES")
            assert {"name": "flight_orders_per_minute", "kind": "view"} in cur.fetch_arrow_table().to_pylist()
            # The same count as a batch query over the same generated events.
            cur.execute("SELECT count(*) AS n FROM datagen('orders', 2000, 7)")
            assert cur.fetchall() == [(2000,)]
            names = {
                t["table_name"]: t["table_type"]
                for c in conn.adbc_get_objects(depth="tables", catalog_filter="weir",
                                               db_schema_filter="public").read_all().to_pylist()
                for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]
            }
            # As information_schema.tables shows them: the view as VIEW, the source as TABLE.
            assert names["flight_orders_per_minute"] == "VIEW"
            assert names["flight_orders"] == "TABLE"
        finally:
            cur.execute("DROP SOURCE flight_orders CASCADE")


def test_get_objects_catalog_schema_tables_columns(conn):
    objects = conn.adbc_get_objects(catalog_filter="weir").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["weir"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    for name in ("public", "pg_catalog", "information_schema", "weir_catalog"):
        assert name in schemas, sorted(schemas)
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert tables["typed"]["table_type"] == "TABLE"
    assert tables["sales"]["table_type"] == "TABLE"
    assert tables["paris_sales"]["table_type"] == "VIEW"
    columns = [c["column_name"] for c in tables["typed"]["table_columns"]]
    assert columns == TYPED_COLUMNS
    positions = [c["ordinal_position"] for c in tables["typed"]["table_columns"]]
    assert positions == list(range(1, len(TYPED_COLUMNS) + 1))

    only_views = conn.adbc_get_objects(depth="tables", catalog_filter="weir", db_schema_filter="public",
                                       table_types_filter=["VIEW"]).read_all().to_pylist()
    names = [t["table_name"] for s in only_views[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert "paris_sales" in names and "typed" not in names

    pattern = conn.adbc_get_objects(depth="tables", catalog_filter="weir", db_schema_filter="pub%",
                                    table_name_filter="sa%").read_all().to_pylist()
    names = [t["table_name"] for s in pattern[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert names == ["sales"]
    assert set(conn.adbc_get_table_types()) >= {"TABLE", "VIEW"}


def test_get_table_schema(conn):
    schema = conn.adbc_get_table_schema("typed")
    assert schema.names == TYPED_COLUMNS
    for name, arrow_type in TYPED_ARROW.items():
        assert schema.field(name).type == arrow_type, name
    # Hive partition columns come back as plain strings.
    assert conn.adbc_get_table_schema("sales", db_schema_filter="public").field("dt").type == pa.string()


def test_ddl_through_the_cursor(conn, weir):
    location = os.path.join(os.path.dirname(__file__), "..", "fixtures", "data", "typed")
    with conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE flight_typed STORED AS PARQUET LOCATION '{os.path.abspath(location)}/'")
        cur.execute("CREATE VIEW flight_small AS SELECT id, small FROM flight_typed WHERE small > 0")
        cur.execute("SELECT * FROM flight_small")
        assert cur.fetchall() == [(3, 32767)]
        cur.execute("DROP VIEW flight_small")
        cur.execute("DROP TABLE flight_typed")
        # Ran once each: the table is gone, and dropping it again fails.
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT * FROM flight_typed")
        assert 'relation "flight_typed" does not exist' in str(err.value)
        # Statement updates (execute_update) run DDL too, a script statement by statement.
        cur.executescript("CREATE VIEW flight_one AS SELECT 1 AS a; DROP VIEW flight_one")
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute("SELECT * FROM flight_one")


def test_errors_carry_message_and_sqlstate(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
            cur.execute("SELECT * FROM nope")
        assert 'relation "nope" does not exist' in str(err.value)
        assert "42P01" in str(err.value)
        assert "NOT_FOUND" in str(err.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
            cur.execute("SELEC 1")
        assert "syntax error" in str(err.value) and "42601" in str(err.value)
        assert "INVALID_ARGUMENT" in str(err.value)
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT 1 / 0")
            cur.fetchall()
        assert "division by zero" in str(err.value).lower() or "divide by zero" in str(err.value).lower()
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SET application_name = 'x'")
        assert "no session" in str(err.value)
        # A setting of the server is refused outright, here as on the PostgreSQL port.
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SET datafusion.execution.batch_size = 1")
        assert "42501" in str(err.value) and "setting of the server" in str(err.value)
        cur.execute("SELECT 'still here' AS s")
        assert cur.fetchall() == [("still here",)]


# --- pyarrow.flight, with the Flight SQL command encoded by hand ---------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def statement_query(sql: str) -> bytes:
    """google.protobuf.Any wrapping arrow.flight.protocol.sql.CommandStatementQuery{query}."""
    command = _field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(1, type_url) + _field(2, command)


def test_pyarrow_flight_statement_query(weir):
    client = flight.FlightClient(uri(weir.flight_port))
    try:
        descriptor = flight.FlightDescriptor.for_command(
            statement_query("SELECT id, label FROM typed WHERE id < 3 ORDER BY id"))
        info = client.get_flight_info(descriptor)
        assert info.schema.names == ["id", "label"]
        assert len(info.endpoints) == 1
        table = client.do_get(info.endpoints[0].ticket).read_all()
        assert table.to_pylist() == [{"id": 1, "label": "alpha"}, {"id": 2, "label": "béta, with comma"}]

        # A large result streams in several batches.
        info = client.get_flight_info(flight.FlightDescriptor.for_command(
            statement_query("SELECT * FROM datagen('transactions', 50000, 1)")))
        reader = client.do_get(info.endpoints[0].ticket)
        batches = 0
        rows = 0
        for chunk in reader:
            batches += 1
            rows += chunk.data.num_rows
        assert rows == 50000 and batches > 1

        # Garbage gets a clear error (INVALID_ARGUMENT: pyarrow's ArrowInvalid), and the
        # server goes on.
        with pytest.raises(pa.ArrowInvalid, match="DecodeError"):
            client.do_get(flight.Ticket(b"garbage")).read_all()
        with pytest.raises(pa.ArrowInvalid, match="DecodeError"):
            client.get_flight_info(flight.FlightDescriptor.for_command(b"\xff\xff"))
        with pytest.raises(pa.ArrowInvalid) as err:
            client.do_get(flight.Ticket(_field(1, b"type.googleapis.com/arrow.flight.protocol.sql.TicketStatementQuery")
                                        + _field(2, _field(1, b"zz")))).read_all()
        assert "not a ticket this server issued" in str(err.value)
        info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query("SELECT 7 AS n")))
        assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"n": 7}]
    finally:
        client.close()


# --- Authentication ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    from test_auth import weir_server

    d = tmp_path_factory.mktemp("flight-auth")
    (d / "users").write_text("alice:Al1ce pw\n")
    port = _free_port()
    with weir_server(d, "--auth-users-file", str(d / "users"), flight_port=port) as (_, log):
        yield port, log


def test_password_login_and_token(auth_server):
    port, log = auth_server
    with flight_sql.connect(uri(port), db_kwargs={"username": "alice", "password": "Al1ce pw"},
                            autocommit=True) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM typed")
        assert cur.fetchall() == [(4,)]
        cur.execute("SELECT label FROM typed WHERE id = ?", (1,))
        assert cur.fetchall() == [("alpha",)]
        assert "weir" in [o["catalog_name"] for o in c.adbc_get_objects(depth="catalogs").read_all().to_pylist()]

    # pyarrow: the Handshake's bearer token works on later calls, a made-up one does not.
    client = flight.FlightClient(uri(port))
    try:
        header = client.authenticate_basic_token("alice", "Al1ce pw")
        assert header[0] == b"authorization" and header[1].startswith(b"Bearer ")
        options = flight.FlightCallOptions(headers=[header])
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(statement_query("SELECT 5 AS n")), options)
        assert client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist() == [{"n": 5}]
        bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer made-up")])
        with pytest.raises(flight.FlightUnauthenticatedError) as err:
            client.get_flight_info(flight.FlightDescriptor.for_command(statement_query("SELECT 1")), bad)
        assert "unknown bearer token" in str(err.value)
    finally:
        client.close()


def test_wrong_password_and_no_credentials(auth_server):
    port, log = auth_server
    with pytest.raises(adbc_driver_manager.Error) as err:
        with flight_sql.connect(uri(port), db_kwargs={"username": "alice", "password": "wrong"},
                                autocommit=True) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
    assert "UNAUTHENTICATED" in str(err.value)
    assert 'password authentication failed for user "alice"' in str(err.value)

    with pytest.raises(adbc_driver_manager.Error) as err:
        with flight_sql.connect(uri(port), autocommit=True) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
    assert "UNAUTHENTICATED" in str(err.value)
    assert "authentication required" in str(err.value)

    client = flight.FlightClient(uri(port))
    try:
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(flight.FlightDescriptor.for_command(statement_query("SELECT 1")))
    finally:
        client.close()
    text = log.read_text()
    # Logged once per burst of failures from the address, never the password.
    assert "Flight SQL: password authentication failed" in text and "alice" in text
    assert "wrong" not in text and "Al1ce pw" not in text


# --- TLS, limits -----------------------------------------------------------------------------

def _certificate(d):
    from test_auth import OPENSSL

    if OPENSSL is None:
        pytest.fail("openssl not installed (scripts/setup.sh installs it)", pytrace=False)
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_with_a_self_signed_certificate(tmp_path):
    from test_auth import weir_server

    cert, key = _certificate(tmp_path)
    (tmp_path / "users").write_text("alice:Al1ce pw\n")
    port = _free_port()
    with weir_server(tmp_path, "--auth-users-file", str(tmp_path / "users"),
                     "--tls-cert", str(cert), "--tls-key", str(key), flight_port=port):
        kwargs = {"username": "alice", "password": "Al1ce pw",
                  "adbc.flight.sql.client_option.tls_root_certs": cert.read_text()}
        with flight_sql.connect(f"grpc+tls://127.0.0.1:{port}", db_kwargs=kwargs,
                                autocommit=True) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM typed")
            assert cur.fetchall() == [(4,)]
        # Plain text to the TLS port gets nowhere.
        with pytest.raises(adbc_driver_manager.Error):
            with flight_sql.connect(uri(port), db_kwargs={"username": "alice", "password": "Al1ce pw"},
                                    autocommit=True) as c, c.cursor() as cur:
                cur.execute("SELECT 1")


def test_statement_timeout(tmp_path):
    from test_auth import weir_server

    port = _free_port()
    with weir_server(tmp_path, "--statement-timeout-ms", "300", flight_port=port):
        with flight_sql.connect(uri(port), autocommit=True) as c, c.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT count(*) FROM generate_series(1, 2000000000) a")
                cur.fetchall()
            assert "57014" in str(err.value) and "statement timeout" in str(err.value)
            cur.execute("SELECT 2 AS n")
            assert cur.fetchall() == [(2,)]


def create_prepared(client, sql: str) -> bytes:
    """DoAction CreatePreparedStatement; the handle."""
    request = _field(1, b"type.googleapis.com/arrow.flight.protocol.sql.ActionCreatePreparedStatementRequest") \
        + _field(2, _field(1, sql.encode()))
    results = list(client.do_action(flight.Action("CreatePreparedStatement", request)))
    return results[0].body.to_pybytes()


def test_prepared_statements_are_bounded_per_client(tmp_path):
    from test_auth import weir_server

    port = _free_port()
    with weir_server(tmp_path, flight_port=port):
        client = flight.FlightClient(uri(port))
        try:
            for _ in range(256):
                create_prepared(client, "SELECT 1")
            # RESOURCE_EXHAUSTED, which pyarrow raises as ArrowInvalid.
            with pytest.raises(pa.ArrowInvalid) as err:
                create_prepared(client, "SELECT 1")
            assert "53400" in str(err.value) and "for this client (256)" in str(err.value)
            # The server goes on: statements run, and closing some frees the bound.
            info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query("SELECT 3 AS n")))
            assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"n": 3}]
        finally:
            client.close()
