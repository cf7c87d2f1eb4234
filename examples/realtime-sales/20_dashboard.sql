-- The dashboard's month view, rolled up from the days when it is queried.
CREATE VIEW sales_by_month AS
SELECT date_trunc('month', day) AS month, category, round(sum(revenue), 2) AS revenue,
       sum(units) AS units, sum(sales) AS sales
FROM sales_by_category_day GROUP BY 1, 2;
