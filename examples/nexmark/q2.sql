-- q2, selection: the bids on one auction in 123.
CREATE MATERIALIZED VIEW q2 WITH (retention = '10 minutes') AS
SELECT auction, price FROM bid WHERE auction % 123 = 0;
