-- q6, average selling price per seller: the average of the final prices of each
-- seller's last ten auctions (by expiry). The per-auction maxima are kept up to date
-- from the join; the ranking and the average run over them when read.
CREATE MATERIALIZED VIEW q6 AS
SELECT seller, AVG(final) AS avg_final
FROM (
    SELECT seller, final,
           ROW_NUMBER() OVER (PARTITION BY seller ORDER BY expires DESC, id DESC) AS rn
    FROM (
        SELECT A.id, A.seller, A.expires, MAX(B.price) AS final
        FROM auction A, bid B
        WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
        GROUP BY A.id, A.seller, A.expires
    ) Q
) R
WHERE rn <= 10
GROUP BY seller;
