-- The Flink job's aggregates, updated continuously: sales per category and day, per day,
-- per category since the start, and per minute for the live chart.

CREATE MATERIALIZED VIEW sales_by_category_day AS
SELECT window_start AS day, category, sum(amount) AS revenue,
       sum(quantity) AS units, count(*) AS sales
FROM TUMBLE(product_sold, ts, INTERVAL '1' DAY)
GROUP BY window_start, window_end, category;

CREATE MATERIALIZED VIEW sales_by_day AS
SELECT window_start AS day, sum(amount) AS revenue, sum(quantity) AS units,
       count(*) AS sales
FROM TUMBLE(product_sold, ts, INTERVAL '1' DAY)
GROUP BY window_start, window_end;

CREATE MATERIALIZED VIEW sales_by_category AS
SELECT category, sum(amount) AS revenue, sum(quantity) AS units, count(*) AS sales
FROM product_sold GROUP BY category;

CREATE MATERIALIZED VIEW sales_per_minute AS
SELECT window_start AS minute, category, sum(amount) AS revenue, count(*) AS sales
FROM TUMBLE(product_sold, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, category;
