-- ShopNow+'s five event topics, as `weir gen --profile shop` fills them (the seed's
-- produit-consulte, article-ajoute, commande-validee, paiement-accepte and
-- stock-mis-a-jour). Events may arrive up to 5 seconds out of order.

CREATE SOURCE page_views (
  event_id VARCHAR, user_id VARCHAR, product_id VARCHAR, category VARCHAR, price DECIMAL(12, 2),
  ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'page_views', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE cart_additions (
  event_id VARCHAR, user_id VARCHAR, product_id VARCHAR, quantity INT, price DECIMAL(12, 2),
  ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'cart_additions', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE orders (
  order_id VARCHAR, user_id VARCHAR, product_id VARCHAR, category VARCHAR, city VARCHAR,
  quantity INT, amount DECIMAL(12, 2), ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'orders', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE payments (
  payment_id VARCHAR, order_id VARCHAR, user_id VARCHAR, amount DECIMAL(12, 2),
  payment_method VARCHAR, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'payments', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE stock_updates (
  product_id VARCHAR, stock INT, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'stock_updates', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);
