-- q8, monitor new users: people who created an account and put up an auction in the
-- same 10-second window. A window join: each side is a view of its closed windows, and
-- the join on the window's start lets both sides' rows go once the window has passed.
CREATE MATERIALIZED VIEW q8_person AS
SELECT id, name, window_start AS starttime
FROM TUMBLE(person, date_time, INTERVAL '10' SECOND)
GROUP BY id, name, window_start, window_end
EMIT ON WINDOW CLOSE;

CREATE MATERIALIZED VIEW q8_auction AS
SELECT seller, window_start AS starttime
FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND)
GROUP BY seller, window_start, window_end
EMIT ON WINDOW CLOSE;

CREATE MATERIALIZED VIEW q8 AS
SELECT P.id, P.name, P.starttime
FROM q8_person AS P JOIN q8_auction AS A ON P.id = A.seller AND P.starttime = A.starttime;
