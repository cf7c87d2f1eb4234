-- The Flink job's real-time reports. Revenue = quantity x price.

CREATE MATERIALIZED VIEW revenue_by_city AS
SELECT city, sum(total) AS revenue, count(*) AS orders, sum(quantity) AS units
FROM sales GROUP BY city;

CREATE MATERIALIZED VIEW revenue_by_category AS
SELECT category, sum(total) AS revenue, count(*) AS orders, sum(quantity) AS units
FROM sales GROUP BY category;

-- Top 5 best-selling products of each day (by orders, then units).
CREATE MATERIALIZED VIEW best_sellers_today AS
SELECT day, product_id, product_name, orders, units, rank FROM (
  SELECT window_start AS day, product_id, product_name, count(*) AS orders,
         sum(quantity) AS units,
         ROW_NUMBER() OVER (PARTITION BY window_start
                            ORDER BY count(*) DESC, sum(quantity) DESC, product_id) AS rank
  FROM TUMBLE(sales, ts, INTERVAL '1' DAY)
  GROUP BY window_start, window_end, product_id, product_name)
WHERE rank <= 5;

-- Low-stock alerts: a product record with fewer than 10 units left. Kept a day.
CREATE MATERIALIZED VIEW low_stock WITH (retention = '24 hours') AS
SELECT product_id, product_name, category, stock, ts FROM products WHERE stock < 10;

-- Today's sales per city and category, the live counterpart of sales_history.
CREATE MATERIALIZED VIEW sales_daily AS
SELECT CAST(window_start AS DATE) AS day, city, category, count(*) AS orders,
       sum(quantity) AS units, sum(total) AS revenue
FROM TUMBLE(sales, ts, INTERVAL '1' DAY)
GROUP BY window_start, window_end, city, category;
