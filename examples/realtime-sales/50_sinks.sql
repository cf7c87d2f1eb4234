-- The aggregates upserted into PostgreSQL, as the seed's Flink job does: a replay writes
-- the same rows again, never duplicates. POSTGRES_URL points at the database.

CREATE SINK sales_pg FROM sales_by_category_day WITH (connector = 'postgres',
  url = '${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/sales}',
  table = 'sales_by_category_day', 'primary.key' = 'day,category', 'create.table' = 'true');

CREATE SINK sales_by_day_pg FROM sales_by_day WITH (connector = 'postgres',
  url = '${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/sales}',
  table = 'sales_by_day', 'primary.key' = 'day', 'create.table' = 'true');

CREATE SINK sales_by_category_pg FROM sales_by_category WITH (connector = 'postgres',
  url = '${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/sales}',
  table = 'sales_by_category', 'primary.key' = 'category', 'create.table' = 'true');
