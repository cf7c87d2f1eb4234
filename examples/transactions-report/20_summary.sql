-- The four metric cards of the results section: transactions analysed, unique users,
-- revenue, average amount, and items sold.
CREATE MATERIALIZED VIEW report_summary AS
SELECT count(*) AS transactions, count(DISTINCT user_id) AS unique_users,
       sum(amount) AS revenue, CAST(avg(amount) AS DECIMAL(12, 2)) AS average_amount,
       sum(quantity) AS items_sold
FROM transactions;

-- The transactions of the last hour of event time; the table of the ten largest reads
-- them when it is queried.
CREATE MATERIALIZED VIEW recent_transactions WITH (retention = '1 hour') AS
SELECT transaction_id, user_id, city, category, amount, quantity, payment_method, ts
FROM transactions;

CREATE VIEW top_transactions AS
SELECT transaction_id, user_id, city, category, amount, quantity, payment_method, ts
FROM recent_transactions ORDER BY amount DESC, transaction_id LIMIT 10;

-- The top 3 categories of the report.
CREATE VIEW top_categories AS
SELECT category, revenue, transactions FROM revenue_by_category ORDER BY revenue DESC LIMIT 3;
