"""Writes the small Parquet files that the default `sql/` folder and the tests read.

The files are committed; run this only to change them:  python3 scripts/make_fixtures.py [name…]
"""
import datetime as dt
import decimal
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(table, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def products():
    rows = [
        (1, "Wireless Mouse", "Electronics", "24.99", 120, True, dt.date(2025, 3, 1)),
        (2, "Mechanical Keyboard", "Electronics", "89.90", 45, True, dt.date(2025, 5, 12)),
        (3, "USB-C Hub", "Electronics", "39.50", 3, True, dt.date(2025, 9, 30)),
        (4, "Running Shoes", "Sports", "119.00", 60, True, dt.date(2024, 11, 2)),
        (5, "Yoga Mat", "Sports", "29.99", 0, True, dt.date(2024, 1, 15)),
        (6, "Coffee Maker", "Home", "74.25", 18, True, dt.date(2025, 2, 20)),
        (7, "Desk Lamp", "Home", "32.00", 4, False, dt.date(2023, 8, 8)),
        (8, "Novel: The River", "Books", "14.95", 210, True, dt.date(2026, 1, 5)),
        (9, "Cookbook", "Books", "22.40", 75, True, dt.date(2025, 12, 1)),
        (10, "Backpack", "Fashion", "59.00", 33, True, dt.date(2025, 7, 7)),
    ]
    t = pa.table(
        {
            "product_id": pa.array([r[0] for r in rows], pa.int32()),
            "name": pa.array([r[1] for r in rows], pa.string()),
            "category": pa.array([r[2] for r in rows], pa.string()),
            "price": pa.array([decimal.Decimal(r[3]) for r in rows], pa.decimal128(10, 2)),
            "stock": pa.array([r[4] for r in rows], pa.int32()),
            "active": pa.array([r[5] for r in rows], pa.bool_()),
            "launched": pa.array([r[6] for r in rows], pa.date32()),
        }
    )
    write(t, os.path.join(ROOT, "sql/data/products/products.parquet"))


def typed():
    # Every type the wire tests check, with a row of NULLs.
    ts = lambda *a: dt.datetime(*a)
    tz = lambda *a: dt.datetime(*a, tzinfo=dt.timezone.utc)
    t = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "small": pa.array([-7, 0, 32767, None], pa.int16()),
            "big": pa.array([9007199254740993, -1, 0, None], pa.int64()),
            "real_val": pa.array([1.5, -0.25, 3.0, None], pa.float32()),
            "double_val": pa.array([3.141592653589793, -2.5e-10, 1e20, None], pa.float64()),
            "amount": pa.array([decimal.Decimal("1234.567"), decimal.Decimal("-0.001"), decimal.Decimal("0.000"), None], pa.decimal128(12, 3)),
            "label": pa.array(["alpha", "béta, with comma", "", None], pa.string()),
            "flag": pa.array([True, False, True, None], pa.bool_()),
            "day": pa.array([dt.date(2026, 11, 21), dt.date(1999, 12, 31), dt.date(1970, 1, 1), None], pa.date32()),
            "ts": pa.array([ts(2026, 11, 21, 10, 15, 0), ts(2026, 11, 21, 23, 59, 59, 500000), ts(1970, 1, 1, 0, 0, 0), None], pa.timestamp("us")),
            "tstz": pa.array([tz(2026, 11, 21, 10, 15, 0), tz(2000, 2, 29, 12, 0, 0, 250000), tz(1970, 1, 1, 0, 0, 0), None], pa.timestamp("us", tz="UTC")),
        }
    )
    write(t, os.path.join(ROOT, "tests/fixtures/data/typed/typed.parquet"))


def sales():
    # Hive-style partitions: the `dt` folder name becomes a column.
    parts = {
        "2026-11-20": [("Paris", "Electronics", "120.50"), ("Lyon", "Books", "15.00"), ("Paris", "Books", "22.40")],
        "2026-11-21": [("Marseille", "Sports", "119.00"), ("Paris", "Electronics", "89.90")],
    }
    for day, rows in parts.items():
        t = pa.table(
            {
                "city": pa.array([r[0] for r in rows], pa.string()),
                "category": pa.array([r[1] for r in rows], pa.string()),
                "amount": pa.array([decimal.Decimal(r[2]) for r in rows], pa.decimal128(10, 2)),
            }
        )
        write(t, os.path.join(ROOT, f"tests/fixtures/data/sales/dt={day}/part-0.parquet"))


def catalog():
    # The product dimension of the datagen profiles (product_id P00001…): the first 800
    # of the generator's 1000 products, so that some orders find no product.
    brands = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"]
    ids = range(1, 801)
    t = pa.table(
        {
            "product_id": pa.array([f"P{i:05d}" for i in ids], pa.string()),
            "brand": pa.array([brands[i % 5] for i in ids], pa.string()),
            "list_price": pa.array([5 + (i * 37) % 200 + 0.99 for i in ids], pa.float64()),
        }
    )
    write(t, os.path.join(ROOT, "tests/fixtures/data/catalog/catalog.parquet"))


if __name__ == "__main__":
    import sys

    wanted = sys.argv[1:] or ["products", "typed", "sales", "catalog"]
    for name in wanted:
        globals()[name]()
