-- What ShopSphere keeps in HDFS: the raw sales by event date, and each finished day's
-- figures per city and category (closed windows only, so every row is final).

CREATE MATERIALIZED VIEW sales_daily_closed AS
SELECT window_start AS day, city, category, count(*) AS orders, sum(quantity) AS units,
       sum(total) AS revenue
FROM TUMBLE(sales, ts, INTERVAL '1' DAY)
GROUP BY window_start, window_end, city, category
EMIT ON WINDOW CLOSE;

CREATE SINK raw_sales FROM sales WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/shopsphere/transactions/', 'partition.by' = 'dt');

CREATE SINK daily_sales_archive FROM sales_daily_closed WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/shopsphere/daily/');

-- Low-stock alerts on a Kafka topic for the purchasing team, keyed by product.
CREATE SINK alerts FROM low_stock WITH (connector = 'kafka', topic = 'low-stock-alerts',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}', format = 'json',
  'key.columns' = 'product_id');
