-- q3, local item suggestion: sellers in Oregon, Idaho or California (the generator's
-- state codes are lower case) of auctions in category 10. A join of two streams without
-- a time bound: both sides' rows are kept.
CREATE MATERIALIZED VIEW q3 AS
SELECT P.name, P.city, P.state, A.id
FROM auction AS A JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca');
