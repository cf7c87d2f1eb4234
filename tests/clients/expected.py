"""The fixture values the client tests expect, as written by scripts/make_fixtures.py."""

import datetime as dt
from decimal import Decimal

UTC = dt.timezone.utc

TYPED_COLUMNS = [
    "id", "small", "big", "real_val", "double_val", "amount",
    "label", "flag", "day", "ts", "tstz",
]
TYPED_SELECT = "SELECT " + ", ".join(TYPED_COLUMNS) + " FROM typed ORDER BY id"

TYPED_ROWS = [
    (1, -7, 9007199254740993, 1.5, 3.141592653589793, Decimal("1234.567"), "alpha", True,
     dt.date(2026, 11, 21), dt.datetime(2026, 11, 21, 10, 15, 0),
     dt.datetime(2026, 11, 21, 10, 15, 0, tzinfo=UTC)),
    (2, 0, -1, -0.25, -2.5e-10, Decimal("-0.001"), "béta, with comma", False,
     dt.date(1999, 12, 31), dt.datetime(2026, 11, 21, 23, 59, 59, 500000),
     dt.datetime(2000, 2, 29, 12, 0, 0, 250000, tzinfo=UTC)),
    (3, 32767, 0, 3.0, 1e20, Decimal("0.000"), "", True,
     dt.date(1970, 1, 1), dt.datetime(1970, 1, 1, 0, 0, 0),
     dt.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC)),
    (4, None, None, None, None, None, None, None, None, None, None),
]

# Type OIDs of the typed columns. text columns may come back as varchar (1043).
OID = {
    "bool": 16, "int8": 20, "int2": 21, "int4": 23, "text": 25, "float4": 700, "float8": 701,
    "varchar": 1043, "date": 1082, "timestamp": 1114, "timestamptz": 1184, "numeric": 1700,
}
TYPED_OIDS = {
    "id": {OID["int4"]},
    "small": {OID["int2"]},
    "big": {OID["int8"]},
    "real_val": {OID["float4"]},
    "double_val": {OID["float8"]},
    "amount": {OID["numeric"]},
    "label": {OID["text"], OID["varchar"]},
    "flag": {OID["bool"]},
    "day": {OID["date"]},
    "ts": {OID["timestamp"]},
    "tstz": {OID["timestamptz"]},
}

# How PostgreSQL names these types in format_type() (psql's \d) and information_schema.
TYPED_FORMAT_TYPE = {
    "id": {"integer"},
    "small": {"smallint"},
    "big": {"bigint"},
    "real_val": {"real"},
    "double_val": {"double precision"},
    "amount": {"numeric(12,3)", "numeric"},
    "label": {"text", "character varying"},
    "flag": {"boolean"},
    "day": {"date"},
    "ts": {"timestamp without time zone"},
    "tstz": {"timestamp with time zone"},
}
TYPED_INFORMATION_SCHEMA_TYPE = {
    name: {t.split("(")[0] for t in types} for name, types in TYPED_FORMAT_TYPE.items()
}

# PostgreSQL's text output (DateStyle ISO, TimeZone UTC, extra_float_digits 1) of the typed
# rows, NULL shown as None.
TYPED_TEXT = [
    ["1", "-7", "9007199254740993", "1.5", "3.141592653589793", "1234.567", "alpha", "t",
     "2026-11-21", "2026-11-21 10:15:00", "2026-11-21 10:15:00+00"],
    ["2", "0", "-1", "-0.25", "-2.5e-10", "-0.001", "béta, with comma", "f",
     "1999-12-31", "2026-11-21 23:59:59.5", "2000-02-29 12:00:00.25+00"],
    ["3", "32767", "0", "3", "1e+20", "0.000", "", "t",
     "1970-01-01", "1970-01-01 00:00:00", "1970-01-01 00:00:00+00"],
    ["4"] + [None] * 10,
]

# sales ordered by amount: (city, category, amount, dt)
SALES_BY_AMOUNT = [
    ("Lyon", "Books", Decimal("15.00"), "2026-11-20"),
    ("Paris", "Books", Decimal("22.40"), "2026-11-20"),
    ("Paris", "Electronics", Decimal("89.90"), "2026-11-21"),
    ("Marseille", "Sports", Decimal("119.00"), "2026-11-21"),
    ("Paris", "Electronics", Decimal("120.50"), "2026-11-20"),
]
PARIS_SALES_BY_AMOUNT = [r for r in SALES_BY_AMOUNT if r[0] == "Paris"]

PRODUCTS = {
    1: ("Wireless Mouse", "Electronics", Decimal("24.99"), 120, True, dt.date(2025, 3, 1)),
    2: ("Mechanical Keyboard", "Electronics", Decimal("89.90"), 45, True, dt.date(2025, 5, 12)),
    3: ("USB-C Hub", "Electronics", Decimal("39.50"), 3, True, dt.date(2025, 9, 30)),
    4: ("Running Shoes", "Sports", Decimal("119.00"), 60, True, dt.date(2024, 11, 2)),
    5: ("Yoga Mat", "Sports", Decimal("29.99"), 0, True, dt.date(2024, 1, 15)),
    6: ("Coffee Maker", "Home", Decimal("74.25"), 18, True, dt.date(2025, 2, 20)),
    7: ("Desk Lamp", "Home", Decimal("32.00"), 4, False, dt.date(2023, 8, 8)),
    8: ("Novel: The River", "Books", Decimal("14.95"), 210, True, dt.date(2026, 1, 5)),
    9: ("Cookbook", "Books", Decimal("22.40"), 75, True, dt.date(2025, 12, 1)),
    10: ("Backpack", "Fashion", Decimal("59.00"), 33, True, dt.date(2025, 7, 7)),
}

TABLES = {"typed", "sales", "products"}
VIEWS = {"paris_sales"}


def assert_typed_rows(rows, *, exact_types: bool = True):
    """Compare fetched typed rows with TYPED_ROWS, value by value, and their Python types."""
    rows = [tuple(r) for r in rows]
    assert len(rows) == len(TYPED_ROWS), rows
    for got, want in zip(rows, TYPED_ROWS):
        for name, g, w in zip(TYPED_COLUMNS, got, want):
            where = f"typed.{name} of id={want[0]}"
            if w is None:
                assert g is None, f"{where}: expected NULL, got {g!r}"
                continue
            assert g == w, f"{where}: expected {w!r}, got {g!r}"
            if exact_types:
                assert type(g) is type(w), f"{where}: expected {type(w).__name__}, got {type(g).__name__} ({g!r})"
            if isinstance(w, dt.datetime):
                if w.tzinfo is None:
                    assert g.tzinfo is None, f"{where}: expected a naive datetime, got {g!r}"
                else:
                    assert g.utcoffset() == dt.timedelta(0), f"{where}: expected UTC, got {g!r}"
