-- The Spark job of the report: revenue and transactions per category and 1-minute window.
CREATE MATERIALIZED VIEW revenue_by_category_1m AS
SELECT window_start, window_end, category,
       sum(amount) AS total_revenue, count(*) AS num_transactions
FROM TUMBLE(transactions, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, category;

-- The dashboard's bar chart: revenue by category since the start.
CREATE MATERIALIZED VIEW revenue_by_category AS
SELECT category, sum(amount) AS revenue, count(*) AS transactions,
       sum(quantity) AS items
FROM transactions GROUP BY category;

-- The pie chart: revenue by city.
CREATE MATERIALIZED VIEW revenue_by_city AS
SELECT city, sum(amount) AS revenue, count(*) AS transactions
FROM transactions GROUP BY city;

-- The donut: payment methods.
CREATE MATERIALIZED VIEW payment_methods AS
SELECT payment_method, count(*) AS transactions, sum(amount) AS revenue
FROM transactions GROUP BY payment_method;
