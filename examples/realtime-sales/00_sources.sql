-- Realtime Sales Analytics: simulated sales on the `product_sold` topic, as
-- `weir gen --profile sales` writes them (product, category, city, quantity, amount).

CREATE SOURCE product_sold (
  order_id VARCHAR, user_id VARCHAR, product_id VARCHAR, category VARCHAR, city VARCHAR,
  quantity INT, amount DECIMAL(12, 2), ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'product_sold', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);
