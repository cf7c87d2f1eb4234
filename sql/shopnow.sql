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

-- Views per product and 10-minute window; the top 10 of the current window is
--   SELECT product_id, views FROM top_viewed_10m
--   WHERE window_start = (SELECT max(window_start) FROM top_viewed_10m)
--   ORDER BY views DESC LIMIT 10;
CREATE MATERIALIZED VIEW top_viewed_10m AS
SELECT window_start, window_end, product_id, count(*) AS views
FROM TUMBLE(page_views, ts, INTERVAL '10' MINUTE)
GROUP BY window_start, window_end, product_id;

-- Revenue and order count per 5-minute window.
CREATE MATERIALIZED VIEW revenue_5m AS
SELECT window_start, window_end, sum(amount) AS revenue, count(*) AS orders
FROM TUMBLE(orders, ts, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end;

-- Products added to carts per 10-minute window (units and additions).
CREATE MATERIALIZED VIEW top_cart_10m AS
SELECT window_start, window_end, product_id, sum(quantity) AS units, count(*) AS additions
FROM TUMBLE(cart_additions, ts, INTERVAL '10' MINUTE)
GROUP BY window_start, window_end, product_id;

-- Stock-out alerts: products whose stock fell under 5 in a minute, once the minute is over.
CREATE MATERIALIZED VIEW stock_alerts AS
SELECT window_start, window_end, product_id, min(stock) AS lowest_stock
FROM TUMBLE(stock_updates, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, product_id
HAVING min(stock) < 5
EMIT ON WINDOW CLOSE;

-- The transactions report: revenue per category and minute.
CREATE MATERIALIZED VIEW revenue_by_category_1m AS
SELECT window_start, window_end, category, sum(amount) AS revenue, sum(quantity) AS units, count(*) AS transactions
FROM TUMBLE(transactions, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, category;
