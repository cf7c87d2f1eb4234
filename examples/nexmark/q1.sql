-- q1, currency conversion: bid prices from dollars to euros.
CREATE MATERIALIZED VIEW q1 WITH (retention = '10 minutes') AS
SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid;
