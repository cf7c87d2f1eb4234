"""Writes a small Nexmark-shaped event set as JSON lines, for trying nexmark_flink.py.

    python3 make_sample.py --out DIR [--bids 200000] [--rate 1000] [--seed 1]

DIR gets person.json, auction.json and bid.json, one JSON object per line, in the
columns nexmark_flink.py declares. Events are spread over one timeline in the Nexmark
proportions (1 person : 3 auctions : 46 bids) at --rate events per second, so date_time
ascends within each file. Timestamps are ISO 8601 without a zone, written with 0
(whole seconds), 3 or 6 fractional digits, as all three forms must parse.
"""
import argparse
import datetime as dt
import json
import os
import random
import sys

PERSON_PROPORTION, AUCTION_PROPORTION, BID_PROPORTION = 1, 3, 46
TOTAL_PROPORTION = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
BASE_TIME = dt.datetime(2026, 1, 1)
# Bids and new auctions mostly refer to recent auctions and persons, as in Nexmark.
HOT_WINDOW = 100

CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend",
          "Redmond", "Seattle", "Kent", "Cheyenne"]
STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
NAMES = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah",
         "Deiter", "Walter"]
SURNAMES = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith",
            "Jones", "Noris"]
CHANNELS = ["Google", "Facebook", "Baidu", "Apple"]


def timestamp(t, i):
    """Exact ISO 8601 text of t, with 0, 3 or 6 fractional digits."""
    if t.microsecond == 0:
        return t.isoformat(timespec="seconds")
    if i % 2 == 0 and t.microsecond % 1000 == 0:
        return t.isoformat(timespec="milliseconds")
    return t.isoformat(timespec="microseconds")


def pick_recent(rng, first_id, next_id):
    """An id among the last HOT_WINDOW created (or the first one if none yet)."""
    if next_id <= first_id:
        return first_id
    low = max(first_id, next_id - HOT_WINDOW)
    return rng.randrange(low, next_id)


def extra(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(0, 16)))


def generate(out, bids, rate, seed):
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    total_events = bids * TOTAL_PROPORTION // BID_PROPORTION
    next_person, next_auction = FIRST_PERSON_ID, FIRST_AUCTION_ID
    counts = {"person": 0, "auction": 0, "bid": 0}
    files = {name: open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8")
             for name in counts}
    try:
        event = 0
        while counts["bid"] < bids:
            t = BASE_TIME + dt.timedelta(microseconds=event * 1_000_000 // rate)
            ts = timestamp(t, event)
            slot = event % TOTAL_PROPORTION
            if slot < PERSON_PROPORTION and event < total_events:
                row = {
                    "id": next_person,
                    "name": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
                    "email_address": f"user{next_person}@example.com",
                    "credit_card": " ".join(f"{rng.randrange(10000):04d}" for _ in range(4)),
                    "city": rng.choice(CITIES),
                    "state": rng.choice(STATES),
                    "date_time": ts,
                    "extra": extra(rng),
                }
                next_person += 1
                kind = "person"
            elif slot < PERSON_PROPORTION + AUCTION_PROPORTION and event < total_events:
                initial = rng.randrange(1, 1000)
                row = {
                    "id": next_auction,
                    "item_name": f"item-{next_auction}",
                    "description": f"description of item {next_auction}",
                    "initial_bid": initial,
                    "reserve": initial + rng.randrange(1, 1000),
                    "date_time": ts,
                    "expires": timestamp(t + dt.timedelta(seconds=rng.randrange(10, 200)), event),
                    "seller": pick_recent(rng, FIRST_PERSON_ID, next_person),
                    "category": 10 + rng.randrange(5),
                    "extra": extra(rng),
                }
                next_auction += 1
                kind = "auction"
            else:
                row = {
                    "auction": pick_recent(rng, FIRST_AUCTION_ID, next_auction),
                    "bidder": pick_recent(rng, FIRST_PERSON_ID, next_person),
                    "price": rng.randrange(100, 10_000_000),
                    "channel": rng.choice(CHANNELS),
                    "url": f"https://www.nexmark.com/item.htm?query=1&channel_id={rng.randrange(1 << 20)}",
                    "date_time": ts,
                    "extra": extra(rng),
                }
                kind = "bid"
            files[kind].write(json.dumps(row, separators=(",", ":")))
            files[kind].write("\n")
            counts[kind] += 1
            event += 1
    finally:
        for f in files.values():
            f.close()
    return counts, event


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write the three files into")
    ap.add_argument("--bids", type=int, default=200_000, help="number of bids (default 200000)")
    ap.add_argument("--rate", type=int, default=1000,
                    help="events per second of event time, all kinds together (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.bids <= 0 or args.rate <= 0:
        sys.exit("make_sample: --bids and --rate must be positive")
    counts, events = generate(args.out, args.bids, args.rate, args.seed)
    span = events / args.rate
    print(f"make_sample: wrote {counts['person']} persons, {counts['auction']} auctions, "
          f"{counts['bid']} bids over {span:.1f} s of event time to {args.out}")


if __name__ == "__main__":
    main()
