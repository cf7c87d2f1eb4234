-- Campaign ROI: the three feeds joined per campaign when queried.
-- roi = (revenue - spend) / spend; roas = revenue / spend; cpa = spend per order.
CREATE VIEW campaign_roi AS
SELECT c.campaign_id, c.campaign_name, c.platform, c.objective,
       coalesce(t.sessions, 0) AS sessions, coalesce(r.orders, 0) AS orders,
       coalesce(r.revenue, 0) AS revenue, coalesce(s.spend, 0) AS spend,
       s.impressions, s.clicks,
       round(CAST(s.clicks AS DOUBLE) / s.impressions, 4) AS ctr,
       round(CAST(r.orders AS DOUBLE) / t.sessions, 4) AS conversion_rate,
       round(r.revenue / s.spend, 2) AS roas,
       round((r.revenue - s.spend) / s.spend, 3) AS roi,
       round(s.spend / r.orders, 2) AS cpa
FROM campaigns c
LEFT JOIN campaign_traffic t ON t.campaign_id = c.campaign_id
LEFT JOIN campaign_revenue r ON r.campaign_id = c.campaign_id
LEFT JOIN campaign_spend s ON s.campaign_id = c.campaign_id;

-- The marketing overview: totals over every campaign, and organic alongside.
CREATE VIEW marketing_overview AS
SELECT (SELECT sum(revenue) FROM campaign_revenue) AS revenue,
       (SELECT sum(revenue) FROM campaign_revenue WHERE campaign_id <> 'organic') AS campaign_revenue,
       (SELECT sum(spend) FROM campaign_spend) AS spend,
       (SELECT sum(sessions) FROM campaign_traffic) AS sessions,
       (SELECT sum(orders) FROM campaign_revenue) AS orders;
