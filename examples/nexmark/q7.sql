-- q7, highest bid: per 10-second window, the bids at the window's highest price (ties
-- kept). Nexmark writes it as a join of the bids with the maximum price per window; a
-- rank within each window is the same result for bids inside the window.
CREATE MATERIALIZED VIEW q7 AS
SELECT auction, price, bidder, date_time, window_start, window_end FROM (
  SELECT auction, price, bidder, date_time, window_start, window_end,
         RANK() OVER (PARTITION BY window_start ORDER BY price DESC) AS r
  FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
) WHERE r = 1;
