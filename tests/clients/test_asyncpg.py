"""asyncpg: extended protocol only, named statements, binary results, type introspection and
the reset query a pool sends when a connection is released."""

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from expected import TYPED_ROWS, TYPED_SELECT, assert_typed_rows


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def connect(weir, **kw):
    return await asyncpg.connect(
        host=weir.host, port=weir.port, user=weir.user, database=weir.dbname, timeout=10, **kw
    )


def test_connect_settings_and_fetchval(weir):
    async def go():
        conn = await connect(weir)
        try:
            settings = conn.get_settings()
            assert settings.server_version.startswith("16."), settings.server_version
            assert conn.get_server_version().major == 16
            assert settings.client_encoding.upper() in {"UTF8", "UTF-8"}
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("SELECT current_schema()") == "public"
        finally:
            await conn.close()

    run(go())


def test_fetch_typed_rows_binary(weir):
    async def go():
        conn = await connect(weir)
        try:
            rows = await conn.fetch(TYPED_SELECT)
            assert_typed_rows([tuple(r) for r in rows])
            first = rows[0]
            assert isinstance(first["amount"], Decimal)
            assert first["tstz"].tzinfo is not None and first["tstz"].utcoffset() == dt.timedelta(0)
            assert first["ts"].tzinfo is None
        finally:
            await conn.close()

    run(go())


def test_fetch_with_parameters(weir):
    async def go():
        conn = await connect(weir)
        try:
            assert await conn.fetchval("SELECT label FROM typed WHERE id = $1", 2) == "béta, with comma"
            assert await conn.fetchval("SELECT id FROM typed WHERE label = $1", "alpha") == 1
            rows = await conn.fetch("SELECT id FROM typed WHERE day >= $1 ORDER BY id", dt.date(1999, 12, 31))
            assert [r["id"] for r in rows] == [1, 2]
            assert await conn.fetchval("SELECT id FROM typed WHERE ts = $1", dt.datetime(1970, 1, 1)) == 3
            aware = dt.datetime(2000, 2, 29, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)
            assert await conn.fetchval("SELECT id FROM typed WHERE tstz = $1", aware) == 2
            assert await conn.fetchval("SELECT id FROM typed WHERE amount = $1", Decimal("1234.567")) == 1
            assert await conn.fetchval("SELECT id FROM typed WHERE big = $1", 9007199254740993) == 1
            assert await conn.fetchval("SELECT count(*) FROM typed WHERE flag = $1", True) == 2
            rows = await conn.fetch("SELECT city, amount FROM sales WHERE city = $1 AND amount > $2 ORDER BY amount",
                                    "Paris", Decimal("50"))
            assert [tuple(r) for r in rows] == [("Paris", Decimal("89.90")), ("Paris", Decimal("120.50"))]
        finally:
            await conn.close()

    run(go())


def test_prepared_statement(weir):
    async def go():
        conn = await connect(weir)
        try:
            stmt = await conn.prepare("SELECT id, label, amount FROM typed WHERE id <= $1 ORDER BY id")
            assert [a.name for a in stmt.get_attributes()] == ["id", "label", "amount"]
            types = [a.type.name for a in stmt.get_attributes()]
            assert types in (["int4", "text", "numeric"], ["int4", "varchar", "numeric"]), types
            assert [p.name for p in stmt.get_parameters()] == ["int4"]
            for limit in (1, 4, 2):
                rows = await stmt.fetch(limit)
                assert [tuple(r) for r in rows] == [(r[0], r[6], r[5]) for r in TYPED_ROWS[:limit]]
            assert await stmt.fetchval(3) == 1
            assert await stmt.fetchrow(2) == (1, "alpha", Decimal("1234.567"))
        finally:
            await conn.close()

    run(go())


def test_cursor_in_transaction(weir):
    async def go():
        conn = await connect(weir)
        try:
            async with conn.transaction():
                got = [r["id"] async for r in conn.cursor("SELECT id FROM typed ORDER BY id", prefetch=2)]
                assert got == [1, 2, 3, 4]
        finally:
            await conn.close()

    run(go())


def test_type_introspection(weir):
    async def go():
        conn = await connect(weir)
        try:
            # asyncpg runs this recursive pg_type query for every type OID it has no codec for;
            # calling it for known OIDs checks the query itself.
            rows = await conn._introspect_types([23, 1700, 1184], 10)
            rows = rows[0] if isinstance(rows, tuple) else rows
            names = {r["oid"]: r["name"] for r in rows}
            assert names == {23: "int4", 1700: "numeric", 1184: "timestamptz"}, names
            # Looking up a type by name (set_type_codec on a non-builtin type) reads pg_type/pg_namespace.
            with pytest.raises(ValueError, match="unknown type"):
                await conn.set_type_codec("weir_no_such_type", schema="public", encoder=str, decoder=str)
            assert await conn.fetchval("select 1") == 1
            # Arrays are not among asyncpg's built-in codecs: decoding them runs the
            # introspection query for real.
            assert await conn.fetchval("SELECT array_agg(id ORDER BY id) FROM typed") == [1, 2, 3, 4]
            assert await conn.fetchval("SELECT array_agg(label ORDER BY id) FROM typed") == [
                "alpha", "béta, with comma", "", None]
        finally:
            await conn.close()

    run(go())


def test_errors_keep_connection_usable(weir):
    async def go():
        conn = await connect(weir)
        try:
            with pytest.raises(asyncpg.exceptions.UndefinedTableError) as info:
                await conn.fetch("SELECT * FROM no_such_table")
            assert info.value.sqlstate == "42P01"
            with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
                await conn.fetch("SELECT no_such_column FROM typed WHERE id = $1", 1)
            with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
                await conn.fetch("SELEC 1")
            assert await conn.fetchval("SELECT count(*) FROM typed") == 4
        finally:
            await conn.close()

    run(go())


def test_pool_acquire_release(weir):
    async def go():
        pool = await asyncpg.create_pool(
            host=weir.host, port=weir.port, user=weir.user, database=weir.dbname,
            min_size=1, max_size=2, timeout=10,
        )
        try:
            for i in range(5):
                # Each release sends pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL.
                async with pool.acquire() as conn:
                    assert await conn.fetchval("SELECT label FROM typed WHERE id = $1", 1) == "alpha"
                    assert await conn.fetchval("SELECT $1::int4 + 1", i) == i + 1

            async def one(n):
                async with pool.acquire() as conn:
                    return await conn.fetchval("SELECT count(*) FROM sales WHERE amount > $1", Decimal(n))

            counts = await asyncio.gather(*(one(n) for n in (0, 20, 100, 0)))
            assert counts == [5, 4, 2, 5]
            assert await pool.fetchval("SELECT count(*) FROM products") == 10
        finally:
            await pool.close()

    run(go())


def test_reset_query_directly(weir):
    async def go():
        conn = await connect(weir)
        try:
            await conn.execute(conn.get_reset_query())
            await conn.reset()
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()

    run(go())
