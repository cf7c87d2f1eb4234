-- q0, pass-through: every bid as it arrives; the last 10 minutes of event time are kept.
CREATE MATERIALIZED VIEW q0 WITH (retention = '10 minutes') AS
SELECT auction, bidder, price, date_time FROM bid;
