-- The raw events archived as Parquet by topic and event date (the seed's HDFS consumer):
-- ${WEIR_ARCHIVE}/<topic>/dt=YYYY-MM-DD/part-….parquet, committed with each checkpoint.
-- WEIR_ARCHIVE is hdfs://namenode:8020/shopnow/raw in docker-compose.yml.

CREATE SINK raw_page_views FROM page_views WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/page_views/', 'partition.by' = 'dt');

CREATE SINK raw_cart_additions FROM cart_additions WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/cart_additions/', 'partition.by' = 'dt');

CREATE SINK raw_orders FROM orders WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/orders/', 'partition.by' = 'dt');

CREATE SINK raw_payments FROM payments WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/payments/', 'partition.by' = 'dt');

CREATE SINK raw_stock_updates FROM stock_updates WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/stock_updates/', 'partition.by' = 'dt');

-- Stock alerts for the back office, keyed by product.
CREATE SINK stock_alerts_out FROM stock_alerts WITH (connector = 'kafka',
  topic = 'stock-alerts', 'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  format = 'json', 'key.columns' = 'product_id');
