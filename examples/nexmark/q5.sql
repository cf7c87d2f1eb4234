-- q5, hot items: per 10-second window sliding every 2 seconds, the auctions with the most
-- bids (ties kept). Nexmark writes it as a join of the counts with their maximum per
-- window; ranking within each window is the same result.
CREATE MATERIALIZED VIEW q5 AS
SELECT auction, num, window_start AS starttime, window_end AS endtime FROM (
  SELECT auction, num, window_start, window_end,
         RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS r
  FROM (
    SELECT auction, count(*) AS num, window_start, window_end
    FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end)
) WHERE r = 1;
