-- q4, average price per category: the highest bid of each auction (among the bids made
-- while it was open), averaged per category. An aggregation over a join of two streams;
-- the average over the auctions is computed from the kept per-auction maxima when read.
-- Bids go once the auctions' watermark has passed them (no later auction can match).
CREATE MATERIALIZED VIEW q4 AS
SELECT Q.category, AVG(Q.final) AS avg_final
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
