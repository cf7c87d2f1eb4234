-- The organic cosmetics shop's three feeds, as `weir gen --profile marketing` writes
-- them: web logs (sessions of six lines, each with the campaign that brought it or
-- 'organic'), CRM orders attributed to a campaign, and the ad platforms' spend reports.

CREATE SOURCE web_logs (
  event_id VARCHAR, session_id VARCHAR, user_id VARCHAR, event_type VARCHAR, page VARCHAR,
  campaign_id VARCHAR, traffic_source VARCHAR, device VARCHAR, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'web_logs', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE crm_orders (
  order_id VARCHAR, customer_id VARCHAR, campaign_id VARCHAR, category VARCHAR, items INT,
  amount DECIMAL(12, 2), ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'crm_orders', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

CREATE SOURCE ad_spend (
  report_id VARCHAR, campaign_id VARCHAR, platform VARCHAR, impressions INT, clicks INT,
  spend DECIMAL(12, 2), ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka', topic = 'ad_spend', format = 'json',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:9092}',
  'scan.startup.mode' = 'earliest'
);

-- The campaigns as the ad platforms export them (name, platform, objective, budget).
CREATE EXTERNAL TABLE campaigns STORED AS PARQUET
LOCATION '${WEIR_EXAMPLE_DATA:-data}/campaigns/';
