-- Each feed summed per campaign, continuously.

-- Web traffic: sessions, lines, and how far visitors went.
CREATE MATERIALIZED VIEW campaign_traffic AS
SELECT campaign_id, count(DISTINCT session_id) AS sessions, count(*) AS events,
       count(*) FILTER (WHERE event_type = 'product_view') AS product_views,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_carts,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases
FROM web_logs GROUP BY campaign_id;

-- CRM: orders, revenue and customers each campaign brought.
CREATE MATERIALIZED VIEW campaign_revenue AS
SELECT campaign_id, count(*) AS orders, sum(amount) AS revenue,
       count(DISTINCT customer_id) AS customers
FROM crm_orders GROUP BY campaign_id;

-- Ad platforms: what each campaign cost.
CREATE MATERIALIZED VIEW campaign_spend AS
SELECT campaign_id, platform, sum(impressions) AS impressions, sum(clicks) AS clicks,
       sum(spend) AS spend
FROM ad_spend GROUP BY campaign_id, platform;

-- Revenue per platform: orders enriched with the campaign table; organic when no
-- campaign brought the order.
CREATE MATERIALIZED VIEW revenue_by_platform AS
SELECT coalesce(c.platform, 'organic') AS platform,
       count(*) AS orders, sum(o.amount) AS revenue
FROM crm_orders o LEFT JOIN campaigns c ON o.campaign_id = c.campaign_id
GROUP BY coalesce(c.platform, 'organic');

-- Revenue per campaign and minute, for the time series.
CREATE MATERIALIZED VIEW campaign_revenue_1m AS
SELECT window_start, campaign_id, sum(amount) AS revenue, count(*) AS orders
FROM TUMBLE(crm_orders, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, campaign_id;
