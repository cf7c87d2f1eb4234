-- The report's one topic: e-commerce transactions as `weir gen --profile transactions`
-- writes them (six Moroccan cities, six categories, 10–500 €, 1–5 items, four payment
-- methods), up to 5 seconds out of order.

CREATE SOURCE transactions (
  transaction_id VARCHAR, user_id VARCHAR, city VARCHAR, category VARCHAR, amount DECIMAL(12, 2),
  quantity INT, payment_method VARCHAR, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'transactions', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);
