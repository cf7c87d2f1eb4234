-- The four analyses of ShopNow+'s Spark Streaming job, as materialized views that update
-- within a second of each event.

-- TOP 10 most viewed products of each 10-minute window (the open one included).
CREATE MATERIALIZED VIEW top_viewed_10m AS
SELECT window_start, window_end, product_id, views, rank FROM (
  SELECT window_start, window_end, product_id, count(*) AS views,
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY count(*) DESC, product_id) AS rank
  FROM TUMBLE(page_views, ts, INTERVAL '10' MINUTE)
  GROUP BY window_start, window_end, product_id)
WHERE rank <= 10;

-- Revenue (validated orders) per 5-minute window.
CREATE MATERIALIZED VIEW revenue_5m AS
SELECT window_start, window_end, sum(amount) AS revenue, count(*) AS orders,
       sum(quantity) AS units
FROM TUMBLE(orders, ts, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end;

-- Accepted payments per 5-minute window and method, next to the revenue.
CREATE MATERIALIZED VIEW payments_5m AS
SELECT window_start, window_end, payment_method, sum(amount) AS paid, count(*) AS payments
FROM TUMBLE(payments, ts, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, payment_method;

-- TOP 10 products added to carts (in units) of each 10-minute window.
CREATE MATERIALIZED VIEW top_cart_10m AS
SELECT window_start, window_end, product_id, units, additions, rank FROM (
  SELECT window_start, window_end, product_id, sum(quantity) AS units, count(*) AS additions,
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY sum(quantity) DESC, product_id) AS rank
  FROM TUMBLE(cart_additions, ts, INTERVAL '10' MINUTE)
  GROUP BY window_start, window_end, product_id)
WHERE rank <= 10;

-- Out-of-stock alerts, as each update arrives: a product left with fewer than 5 units.
-- The last 24 hours of them are kept.
CREATE MATERIALIZED VIEW stock_alerts WITH (retention = '24 hours') AS
SELECT product_id, stock, stock = 0 AS out_of_stock, ts
FROM stock_updates WHERE stock < 5;
