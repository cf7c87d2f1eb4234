-- The raw transactions as Parquet, one folder per event date (the report's
-- /tmp/ecommerce-data/raw, written every 30 s by Spark; here with each checkpoint).
CREATE SINK raw_transactions FROM transactions WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/transactions/', 'partition.by' = 'dt');
