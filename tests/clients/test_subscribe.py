"""SUBSCRIBE: a view's changes arrive while its source produces events, in order and each
once, and replaying them gives the view's rows. A datagen source paced at RATE events per
second with COUNT events in all produces for a few seconds, then ends; the subscription
ends with it. Over the PostgreSQL port with psycopg 3's row streaming, and over Arrow
Flight SQL with pyarrow.flight (the SUBSCRIBE statement's ticket streams Arrow batches)."""

import collections
import uuid

import psycopg
import psycopg.errors
import pyarrow.flight as flight
import pytest

from test_flightsql import statement_query, uri

RATE, COUNT = 1000, 3000


@pytest.fixture
def conn(weir):
    with psycopg.connect(**weir.psycopg_kwargs(application_name="weir-tests-subscribe"), autocommit=True) as c:
        yield c


@pytest.fixture
def orders(conn):
    """A fresh source producing COUNT orders at RATE per second, and two views over it:
    running totals per city (changing rows) and one row per closed second."""
    name = f"sub_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE SOURCE {name} (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ("
        f" connector = 'datagen', profile = 'orders', seed = '11', rate = '{RATE}', count = '{COUNT}')"
    )
    conn.execute(
        f"CREATE MATERIALIZED VIEW {name}_cities AS "
        f"SELECT city, count(*) AS n, sum(quantity) AS q FROM {name} GROUP BY city"
    )
    conn.execute(
        f"CREATE MATERIALIZED VIEW {name}_secs AS "
        f"SELECT window_start, count(*) AS n FROM TUMBLE({name}, ts, INTERVAL '1' SECOND) "
        f"GROUP BY window_start EMIT ON WINDOW CLOSE"
    )
    yield name
    conn.execute(f"DROP SOURCE IF EXISTS {name} CASCADE")


def replay(changes):
    """Apply (timestamp, op, *row) changes in order to a multiset of rows, checking that
    timestamps never go back and that every deleted row was there."""
    rows = collections.Counter()
    last = None
    for ts, op, *row in changes:
        assert last is None or ts >= last, f"timestamps went back: {last} then {ts}"
        last = ts
        row = tuple(row)
        if op == "insert":
            rows[row] += 1
        elif op == "delete":
            assert rows[row] > 0, f"deleted a row that was not there: {row}"
            rows[row] -= 1
        else:
            pytest.fail(f"unknown operation {op!r}")
    return +rows


def test_running_totals_replay_to_the_view(conn, orders):
    with conn.cursor() as cur:
        changes = list(cur.stream(f"SUBSCRIBE TO {orders}_cities"))
        assert [d.name for d in cur.description] == ["weir_timestamp", "weir_op", "city", "n", "q"]
    replayed = replay(changes)
    now = collections.Counter(tuple(r) for r in conn.execute(f"SELECT city, n, q FROM {orders}_cities"))
    assert replayed == now
    assert sum(n for _city, n, _q in replayed) == COUNT
    # One row per city at every point: an update is the old row's delete, then the new row.
    seen = collections.Counter()
    for _ts, op, city, *_ in changes:
        seen[city] += 1 if op == "insert" else -1
        assert seen[city] in (0, 1), f"{city} present {seen[city]} times"
    # The changes came while the events did, not all at the end.
    assert len({ts for ts, *_ in changes}) >= 3, "changes arrived in fewer than three steps"


def test_closed_windows_arrive_once_in_order(conn, orders):
    with conn.cursor() as cur:
        changes = list(cur.stream(f"SUBSCRIBE {orders}_secs"))
    assert {op for _ts, op, *_ in changes} == {"insert"}
    windows = [(start, n) for _ts, _op, start, n in changes]
    starts = [start for start, _n in windows]
    assert starts == sorted(set(starts)), "windows out of order or twice"
    assert windows == conn.execute(f"SELECT window_start, n FROM {orders}_secs ORDER BY 1").fetchall()
    assert sum(n for _s, n in windows) == COUNT
    assert len({ts for ts, *_ in changes}) >= 2


@pytest.fixture
def counter(conn):
    """A view counting the events of an endless source (200 a second)."""
    name = f"sub_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SOURCE {name} WITH (connector = 'datagen', profile = 'orders', seed = '5', rate = '200')")
    conn.execute(f"CREATE MATERIALIZED VIEW {name}_n AS SELECT count(*) AS n FROM {name}")
    yield f"{name}_n"
    conn.execute(f"DROP SOURCE IF EXISTS {name} CASCADE")


def follow(conn, sql, rows):
    """The first `rows` rows of a subscription, which is then cancelled; the session
    goes on."""
    got = []
    with conn.cursor() as cur:
        stream = cur.stream(sql)
        for row in stream:
            got.append(row)
            if len(got) == rows:
                break
        conn.cancel_safe()
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to user request"):
            for _ in stream:
                pass
    assert conn.execute("SELECT 1").fetchone() == (1,)
    return got


def test_cancel_ends_a_subscription_and_the_session_goes_on(conn, counter):
    rows = follow(conn, f"SUBSCRIBE TO {counter}", 5)
    # The count now, then each new count replacing the one before.
    assert [op for _ts, op, _n in rows] == ["insert", "delete", "insert", "delete", "insert"]
    assert rows[1][2] == rows[0][2] and rows[3][2] == rows[2][2]
    counts = [n for _ts, op, n in rows if op == "insert"]
    assert counts == sorted(set(counts)), counts


def test_without_snapshot_only_later_changes_arrive(conn, counter):
    (_ts, op, before), = follow(conn, f"SUBSCRIBE TO {counter}", 1)
    assert op == "insert"
    rows = follow(conn, f"SUBSCRIBE TO {counter} WITH (snapshot = false)", 2)
    # The first change replaces the count that was there when the subscription began.
    assert [op for _ts, op, _n in rows] == ["delete", "insert"]
    assert rows[0][2] >= before and rows[1][2] > rows[0][2]


def test_dropping_the_view_ends_its_subscriptions(weir, conn):
    name = f"sub_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE SOURCE {name} WITH (connector = 'datagen', profile = 'orders', seed = '5', rate = '100')"
    )
    conn.execute(f"CREATE MATERIALIZED VIEW {name}_n AS SELECT count(*) AS n FROM {name}")
    with psycopg.connect(**weir.psycopg_kwargs(), autocommit=True) as other:
        with conn.cursor() as cur:
            stream = cur.stream(f"SUBSCRIBE TO {name}_n")
            next(stream)
            other.execute(f"DROP SOURCE {name} CASCADE")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="was dropped"):
                for _ in stream:
                    pass


def flight_changes(weir, sql):
    """The changes of a subscription over Flight SQL, as (timestamp, op, *row) tuples, read
    to its end; and how many batches they came in."""
    if weir.flight_port is None:
        pytest.skip("no Flight SQL port on an external server")
    client = flight.FlightClient(uri(weir.flight_port))
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query(sql)))
        assert info.schema.names[:2] == ["weir_timestamp", "weir_op"]
        assert len(info.endpoints) == 1
        changes, batches = [], 0
        for chunk in client.do_get(info.endpoints[0].ticket):
            batches += 1
            columns = chunk.data.to_pydict()
            changes.extend(zip(*columns.values()))
        return changes, batches
    finally:
        client.close()


def test_flight_running_totals_replay_to_the_view(weir, conn, orders):
    changes, batches = flight_changes(weir, f"SUBSCRIBE TO {orders}_cities")
    replayed = replay(changes)
    now = collections.Counter(tuple(r) for r in conn.execute(f"SELECT city, n, q FROM {orders}_cities"))
    assert replayed == now
    assert sum(n for _city, n, _q in replayed) == COUNT
    # The changes came as the events did, batch after batch.
    assert batches >= 3 and len({ts for ts, *_ in changes}) >= 3


def test_flight_closed_windows_arrive_once_in_order(weir, conn, orders):
    changes, _ = flight_changes(weir, f"SUBSCRIBE {orders}_secs")
    assert {op for _ts, op, *_ in changes} == {"insert"}
    windows = [(start.replace(tzinfo=None) if start.tzinfo else start, n) for _ts, _op, start, n in changes]
    expected = conn.execute(f"SELECT window_start, n FROM {orders}_secs ORDER BY 1").fetchall()
    assert windows == expected
    assert sum(n for _s, n in windows) == COUNT


def test_flight_subscription_of_a_missing_view_is_refused(weir):
    with pytest.raises(Exception, match='relation "sub_nope" does not exist'):
        flight_changes(weir, "SUBSCRIBE TO sub_nope")
