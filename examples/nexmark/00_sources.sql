-- Nexmark's three streams from the built-in generator: 200,000 bids, and the persons and
-- auctions of the same event stream, starting at a fixed time so that every run is the
-- same. Drop 'nexmark.event.num' for an endless stream, and set 'nexmark.event.rate'
-- (events per second) to pace it.

CREATE SOURCE person (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) WITH (
  connector = 'nexmark', 'nexmark.table.type' = 'person',
  'nexmark.event.num' = '4348', 'nexmark.base.time' = '2026-01-01 00:00:00');

CREATE SOURCE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) WITH (
  connector = 'nexmark', 'nexmark.table.type' = 'auction',
  'nexmark.event.num' = '13044', 'nexmark.base.time' = '2026-01-01 00:00:00');

CREATE SOURCE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) WITH (
  connector = 'nexmark', 'nexmark.table.type' = 'bid',
  'nexmark.event.num' = '200000', 'nexmark.base.time' = '2026-01-01 00:00:00');
