"""Writes the small Parquet files that the default `sql/` folder, the examples and the tests read.

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


def shopsphere_history():
    # ShopSphere's history in HDFS: what the shop sold per day, city and category in
    # 2024 and 2025, one Parquet file per year (`year=` folders become a column). Seeded
    # and seasonal: November and December sell most, London most of all.
    import random

    rng = random.Random(2024)
    cities = [("London", 35), ("Manchester", 18), ("Birmingham", 15), ("Leeds", 12), ("Glasgow", 10), ("Bristol", 10)]
    categories = [("Electronics", 180.0), ("Fashion", 70.0), ("Home", 90.0), ("Sports", 60.0), ("Books", 20.0), ("Beauty", 35.0)]
    season = [0.8, 0.75, 0.9, 0.95, 1.0, 1.0, 0.95, 0.9, 1.0, 1.1, 1.5, 1.8]
    for year, growth in [(2024, 1.0), (2025, 1.25)]:
        rows = []
        day = dt.date(year, 1, 1)
        while day.year == year:
            for city, share in cities:
                for category, basket in categories:
                    mean = share * 0.4 * season[day.month - 1] * growth
                    orders = max(0, int(rng.gauss(mean, mean ** 0.5)))
                    units = sum(rng.randint(1, 4) for _ in range(orders))
                    revenue = round(units * basket * rng.uniform(0.85, 1.15), 2)
                    rows.append((day, city, category, orders, units, revenue))
            day += dt.timedelta(days=1)
        t = pa.table(
            {
                "day": pa.array([r[0] for r in rows], pa.date32()),
                "city": pa.array([r[1] for r in rows], pa.string()),
                "category": pa.array([r[2] for r in rows], pa.string()),
                "orders": pa.array([r[3] for r in rows], pa.int64()),
                "units": pa.array([r[4] for r in rows], pa.int64()),
                "revenue": pa.array([r[5] for r in rows], pa.float64()),
            }
        )
        write(t, os.path.join(ROOT, f"examples/shopsphere/data/history/year={year}/part-0.parquet"))


def campaigns():
    # The marketing pipeline's campaign dimension, as the ad platforms export it: the
    # campaigns of the datagen `web_logs`, `crm_orders` and `ad_spend` profiles.
    rows = [
        ("CMP-01", "Spring skincare search", "google_ads", "conversions", dt.date(2026, 1, 1), 400.0),
        ("CMP-02", "Organic beauty awareness", "facebook", "awareness", dt.date(2026, 1, 1), 350.0),
        ("CMP-03", "Glow serum reels", "instagram", "conversions", dt.date(2026, 1, 1), 250.0),
        ("CMP-04", "Makeup challenge", "tiktok", "awareness", dt.date(2026, 1, 1), 300.0),
        ("CMP-05", "Loyalty newsletter", "email", "retention", dt.date(2026, 1, 1), 30.0),
        ("CMP-06", "Influencer haircare box", "influencer", "awareness", dt.date(2026, 1, 1), 280.0),
        ("CMP-07", "Brand keywords", "google_ads", "conversions", dt.date(2026, 1, 1), 200.0),
        ("CMP-08", "Fragrance stories", "instagram", "consideration", dt.date(2026, 1, 1), 120.0),
    ]
    t = pa.table(
        {
            "campaign_id": pa.array([r[0] for r in rows], pa.string()),
            "campaign_name": pa.array([r[1] for r in rows], pa.string()),
            "platform": pa.array([r[2] for r in rows], pa.string()),
            "objective": pa.array([r[3] for r in rows], pa.string()),
            "start_date": pa.array([r[4] for r in rows], pa.date32()),
            "daily_budget": pa.array([r[5] for r in rows], pa.float64()),
        }
    )
    write(t, os.path.join(ROOT, "examples/marketing-roi/data/campaigns/campaigns.parquet"))


if __name__ == "__main__":
    import sys

    wanted = sys.argv[1:] or ["products", "typed", "sales", "catalog", "shopsphere_history", "campaigns"]
    for name in wanted:
        globals()[name]()
