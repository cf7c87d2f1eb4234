-- ShopNow+ live demo on the built-in generator: no Kafka needed. Each source emits the
-- seed pipelines' events in real time (event time = now), a few seconds out of order.

CREATE SOURCE page_views (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'datagen', profile = 'page_views', rate = '200', 'max.out.of.order.ms' = '2000');

CREATE SOURCE cart_additions (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'datagen', profile = 'cart_additions', rate = '50', 'max.out.of.order.ms' = '2000');

CREATE SOURCE orders (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'datagen', profile = 'orders', rate = '20', 'max.out.of.order.ms' = '2000');

CREATE SOURCE stock_updates (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'datagen', profile = 'stock_updates', rate = '20');

CREATE SOURCE transactions (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'datagen', profile = 'transactions', rate = '50', 'max.out.of.order.ms' = '2000');

-- The ten most viewed products of each 10-minute window, the current one included.
CREATE MATERIALIZED VIEW top_viewed_10m AS
SELECT window_start, window_end, product_id, views, rank FROM (
  SELECT window_start, window_end, product_id, count(*) AS views,
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY count(*) DESC, product_id) AS rank
  FROM TUMBLE(page_views, ts, INTERVAL '10' MINUTE)
  GROUP BY window_start, window_end, product_id)
WHERE rank <= 10;

-- Revenue and order count per 5-minute window.
CREATE MATERIALIZED VIEW revenue_5m AS
SELECT window_start, window_end, sum(amount) AS revenue, count(*) AS orders
FROM TUMBLE(orders, ts, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end;

-- The ten products most added to carts (in units) of each 10-minute window.
CREATE MATERIALIZED VIEW top_cart_10m AS
SELECT window_start, window_end, product_id, units, additions, rank FROM (
  SELECT window_start, window_end, product_id, sum(quantity) AS units, count(*) AS additions,
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY sum(quantity) DESC, product_id) AS rank
  FROM TUMBLE(cart_additions, ts, INTERVAL '10' MINUTE)
  GROUP BY window_start, window_end, product_id)
WHERE rank <= 10;

-- Stock alerts: every update that leaves a product under 5 units, as it arrives; the
-- last hour of them is kept.
CREATE MATERIALIZED VIEW stock_alerts WITH (retention = '1 hour') AS
SELECT product_id, stock, ts FROM stock_updates WHERE stock < 5;

-- The transactions report: revenue per category and minute.
CREATE MATERIALIZED VIEW revenue_by_category_1m AS
SELECT window_start, window_end, category, sum(amount) AS revenue, sum(quantity) AS units, count(*) AS transactions
FROM TUMBLE(transactions, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, category;

-- The transactions report's totals since the start, by city and category.
CREATE MATERIALIZED VIEW revenue_by_city_category AS
SELECT city, category, sum(amount) AS revenue, count(*) AS transactions
FROM transactions
GROUP BY city, category;
