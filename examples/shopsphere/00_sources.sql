-- ShopSphere's topics as `weir gen --profile shopsphere` writes them: sales (product,
-- quantity, unit price, total, UK city) and product records with the stock left.

CREATE SOURCE sales (
  transaction_id VARCHAR, user_id VARCHAR, product_id VARCHAR, product_name VARCHAR,
  category VARCHAR, quantity INT, price DECIMAL(12, 2), total DECIMAL(12, 2), city VARCHAR, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'shopsphere.transactions', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE products (
  product_id VARCHAR, product_name VARCHAR, category VARCHAR, price DECIMAL(12, 2), stock INT,
  ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'shopsphere.products', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

-- What the shop sold per day, city and category in 2024 and 2025: the processed data
-- in HDFS (/shopsphere/history in docker-compose.yml; the committed copy in data/ here).
CREATE EXTERNAL TABLE sales_history STORED AS PARQUET
LOCATION '${WEIR_EXAMPLE_DATA:-data}/history/';
