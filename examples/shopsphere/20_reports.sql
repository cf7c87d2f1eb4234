-- Long-term reports: the history in HDFS and the live views read together at query time.

-- Monthly revenue, orders and units per city, history and today alike.
CREATE VIEW monthly_report AS
SELECT date_trunc('month', CAST(day AS TIMESTAMP)) AS month, city,
       round(sum(revenue), 2) AS revenue, sum(orders) AS orders, sum(units) AS units
FROM (SELECT day, city, revenue, orders, units FROM sales_history
      UNION ALL
      SELECT day, city, revenue, orders, units FROM sales_daily) AS all_days
GROUP BY 1, 2;

-- Yearly revenue per category.
CREATE VIEW yearly_report AS
SELECT date_part('year', CAST(day AS TIMESTAMP)) AS year, category,
       round(sum(revenue), 2) AS revenue, sum(orders) AS orders
FROM (SELECT day, category, revenue, orders FROM sales_history
      UNION ALL
      SELECT day, category, revenue, orders FROM sales_daily) AS all_days
GROUP BY 1, 2;

-- Shopping trends: each category's share of revenue per season in the history.
CREATE VIEW seasonal_trends AS
SELECT CASE WHEN date_part('month', CAST(day AS TIMESTAMP)) IN (12, 1, 2) THEN 'winter'
            WHEN date_part('month', CAST(day AS TIMESTAMP)) IN (3, 4, 5) THEN 'spring'
            WHEN date_part('month', CAST(day AS TIMESTAMP)) IN (6, 7, 8) THEN 'summer'
            ELSE 'autumn' END AS season,
       category, round(sum(revenue), 2) AS revenue, sum(units) AS units
FROM sales_history GROUP BY 1, 2;

-- Today against the history: each city's live revenue next to its average day of 2025.
CREATE VIEW city_vs_last_year AS
SELECT live.city, live.revenue AS revenue_today, hist.average_day_2025,
       round(live.revenue / hist.average_day_2025, 3) AS ratio
FROM revenue_by_city live
JOIN (SELECT city, round(sum(revenue) / count(DISTINCT day), 2) AS average_day_2025
      FROM sales_history WHERE year = '2025' GROUP BY city) hist
  ON live.city = hist.city;
