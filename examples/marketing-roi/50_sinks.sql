-- The data lake's raw zone (data/raw/web, crm, advertising in the seed) as Parquet by
-- event date, and the per-campaign figures upserted into the PostgreSQL warehouse.

CREATE SINK raw_web_logs FROM web_logs WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/raw/web/', 'partition.by' = 'dt');

CREATE SINK raw_crm_orders FROM crm_orders WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/raw/crm/', 'partition.by' = 'dt');

CREATE SINK raw_ad_spend FROM ad_spend WITH (connector = 'parquet',
  path = '${WEIR_ARCHIVE:-archive}/raw/advertising/', 'partition.by' = 'dt');

CREATE SINK campaign_revenue_pg FROM campaign_revenue WITH (connector = 'postgres',
  url = '${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/marketing}',
  table = 'campaign_revenue', 'primary.key' = 'campaign_id', 'create.table' = 'true');

CREATE SINK campaign_spend_pg FROM campaign_spend WITH (connector = 'postgres',
  url = '${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/marketing}',
  table = 'campaign_spend', 'primary.key' = 'campaign_id,platform', 'create.table' = 'true');
