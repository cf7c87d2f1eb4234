"""Runs one Nexmark query in Apache Flink SQL (PyFlink, local mini-cluster) over
JSON-lines event files and reports its throughput.

    python nexmark_flink.py --events DIR --query q0|q1|q5|q7|q8 [--parallelism 1] [--json]

DIR holds person.json, auction.json and bid.json (one JSON object per line). The query
reads them through Flink's bounded filesystem source in streaming mode and writes to a
blackhole sink. Reported: input events (lines of the files the query reads), the job's
wall time from submission to completion, the CPU seconds of the Flink JVM over the same
span, and the rates derived from them. JVM start-up and a warm-up job are timed apart.
"""
import argparse
import gc
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(os.environ.get("WEIR_CACHE", os.path.expanduser("~/.cache/weir")),
                    "flink-venv")

TABLES = {
    "person": """
        id BIGINT,
        name STRING,
        email_address STRING,
        credit_card STRING,
        city STRING,
        state STRING,
        date_time TIMESTAMP(3),
        extra STRING""",
    "auction": """
        id BIGINT,
        item_name STRING,
        description STRING,
        initial_bid BIGINT,
        reserve BIGINT,
        date_time TIMESTAMP(3),
        expires TIMESTAMP(3),
        seller BIGINT,
        category BIGINT,
        extra STRING""",
    "bid": """
        auction BIGINT,
        bidder BIGINT,
        price BIGINT,
        channel STRING,
        url STRING,
        date_time TIMESTAMP(3),
        extra STRING""",
}

# The Nexmark benchmark's Flink SQL (nexmark/nexmark, nexmark-flink/src/main/resources/
# queries), with its dateTime column named date_time. Each entry: the tables it reads,
# the blackhole sink's columns, and the query.
QUERIES = {
    # Pass-through.
    "q0": {
        "reads": ["bid"],
        "sink": "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra STRING",
        "sql": """
            SELECT auction, bidder, price, date_time, extra FROM bid""",
    },
    # Currency conversion.
    "q1": {
        "reads": ["bid"],
        "sink": "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3), extra STRING",
        "sql": """
            SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid""",
    },
    # Hot items: the auctions with the most bids in each 10 s window sliding by 2 s.
    "q5": {
        "reads": ["bid"],
        "sink": "auction BIGINT, num BIGINT",
        "sql": """
            SELECT AuctionBids.auction, AuctionBids.num
            FROM (
                SELECT auction, count(*) AS num,
                       window_start AS starttime, window_end AS endtime
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time),
                               INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                GROUP BY auction, window_start, window_end
            ) AS AuctionBids
            JOIN (
                SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
                FROM (
                    SELECT count(*) AS num,
                           window_start AS starttime, window_end AS endtime
                    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time),
                                   INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                    GROUP BY auction, window_start, window_end
                ) AS CountBids
                GROUP BY CountBids.starttime, CountBids.endtime
            ) AS MaxBids
            ON AuctionBids.starttime = MaxBids.starttime
               AND AuctionBids.endtime = MaxBids.endtime
               AND AuctionBids.num >= MaxBids.maxn""",
    },
    # Highest bid: the bids carrying the top price of each 10 s tumbling window.
    "q7": {
        "reads": ["bid"],
        "sink": "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra STRING",
        "sql": """
            SELECT B.auction, B.bidder, B.price, B.date_time, B.extra
            FROM bid B
            JOIN (
                SELECT MAX(price) AS maxprice, window_end AS date_time
                FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY window_start, window_end
            ) B1
            ON B.price = B1.maxprice
            WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time""",
    },
    # Monitor new users: persons who opened an auction in the 10 s window they joined in.
    "q8": {
        "reads": ["person", "auction"],
        "sink": "id BIGINT, name STRING, stime TIMESTAMP(3)",
        "sql": """
            SELECT P.id, P.name, P.starttime
            FROM (
                SELECT id, name, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY id, name, window_start, window_end
            ) P
            JOIN (
                SELECT seller, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY seller, window_start, window_end
            ) A
            ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
    },
}


def die(msg):
    print(f"nexmark_flink: error: {msg}", file=sys.stderr)
    sys.exit(2)


def ensure_pyflink():
    """Re-runs this script under the setup.sh venv when pyflink is not importable here."""
    try:
        import pyflink  # noqa: F401
        return
    except ImportError:
        pass
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.exists(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    die(f"pyflink is not installed; run {os.path.join(HERE, 'setup.sh')} "
        f"and use {venv_python}")


def count_events(path):
    """Non-blank lines of a JSON-lines file."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def table_ddl(name, path):
    return f"""
        CREATE TEMPORARY TABLE {name} ({TABLES[name]},
            WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{path.replace("'", "''")}',
            'format' = 'json',
            'json.timestamp-format.standard' = 'ISO-8601',
            'json.fail-on-missing-field' = 'false',
            'json.ignore-parse-errors' = 'false'
        )"""


def run_query(t_env, query_name, paths):
    """Declares the source tables over paths, runs the query into its blackhole sink and
    returns (wall seconds from submission to completion, TableResult)."""
    for name, path in paths.items():
        t_env.execute_sql(table_ddl(name, path))
    t0 = time.perf_counter()
    result = t_env.execute_sql(f"INSERT INTO nexmark_{query_name} {QUERIES[query_name]['sql']}")
    result.wait()
    wall_s = time.perf_counter() - t0
    for name in paths:
        t_env.execute_sql(f"DROP TEMPORARY TABLE {name}")
    return wall_s, result


def proc_children():
    """Maps each pid to its child pids, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def jvm_pids():
    """The Java gateway process PyFlink started (a child of this process) and its descendants."""
    children = proc_children()
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids):
    """utime + stime of the given processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def process_ended(pid):
    """True once pid has exited; reaps it when it is a child of this process."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2:].split()[0] in (b"Z", b"X")


def stop_jvm(pids, timeout_s=30.0):
    """Ends the gateway JVM and waits until it has exited, so that a following run starts
    on an idle machine. Afterwards the process must leave with os._exit: py4j's
    finalizers would otherwise keep trying to reach the gone JVM."""
    gc.disable()
    logging.disable(logging.CRITICAL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    pending = set(pids)
    while True:
        pending = {p for p in pending if not process_ended(p)}
        if not pending or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def parse_args():
    ap = argparse.ArgumentParser(
        description="Run a Nexmark query in Flink SQL over JSON-lines event files.")
    ap.add_argument("--events", required=True, metavar="DIR",
                    help="folder with person.json, auction.json, bid.json")
    ap.add_argument("--query", required=True, metavar="|".join(QUERIES),
                    help="the query to run")
    ap.add_argument("--parallelism", type=int, default=1, help="Flink parallelism (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.query not in QUERIES:
        die(f"unknown query {args.query!r}; choose one of {', '.join(QUERIES)}")
    if args.parallelism < 1:
        die("--parallelism must be at least 1")
    return args


def main():
    args = parse_args()
    query = QUERIES[args.query]
    events_dir = os.path.abspath(args.events)
    if not os.path.isdir(events_dir):
        die(f"events folder {events_dir} does not exist")
    paths = {}
    for name in query["reads"]:
        path = os.path.join(events_dir, f"{name}.json")
        if not os.path.isfile(path):
            die(f"{path} not found ({args.query} reads {', '.join(query['reads'])})")
        paths[name] = path
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        die("java not found on PATH (PyFlink needs Java 11 or 17)")

    ensure_pyflink()
    # apache-beam, imported by pyflink, warns about pkg_resources on import.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from pyflink.table import EnvironmentSettings, TableEnvironment
    from pyflink.version import __version__ as flink_version

    events = sum(count_events(p) for p in paths.values())

    # JVM start-up, then the same query over empty files as a warm-up: it loads and
    # JIT-compiles the planner, code generator and mini-cluster, and its wall time is
    # the fixed cost every job pays (planning, mini-cluster start, submission).
    t_start = time.perf_counter()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.name", f"nexmark-{args.query}")
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE nexmark_{args.query} ({query['sink']}) "
        "WITH ('connector' = 'blackhole')")
    startup_s = time.perf_counter() - t_start

    pids = jvm_pids()
    if not pids:
        die("could not find the Java gateway process PyFlink started")

    with tempfile.TemporaryDirectory(prefix="nexmark-flink-") as empty_dir:
        empty = {}
        for name in paths:
            empty[name] = os.path.join(empty_dir, f"{name}.json")
            open(empty[name], "w").close()
        empty_run_s, _ = run_query(t_env, args.query, empty)

    cpu0 = cpu_seconds(pids)
    wall_s, result = run_query(t_env, args.query, paths)
    cpu_s = cpu_seconds(pids) - cpu0

    net_runtime_s = None
    job_client = result.get_job_client()
    if job_client is not None:
        try:
            job_result = job_client.get_job_execution_result().result()
            net_runtime_s = round(job_result.get_net_runtime() / 1000, 3)
        except Exception:  # the job result may already be gone from the mini-cluster
            pass

    report = {
        "engine": "flink",
        "query": args.query,
        "events": events,
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "events_per_s": round(events / wall_s, 1),
        "events_per_cpu_s": round(events / cpu_s, 1) if cpu_s > 0 else None,
        "parallelism": args.parallelism,
        "flink_version": flink_version,
        "startup_s": round(startup_s, 3),
        "empty_run_s": round(empty_run_s, 3),
        "net_runtime_s": net_runtime_s,
    }
    if args.json:
        print(json.dumps(report))
    else:
        net = f", Flink net runtime {net_runtime_s:.2f} s" if net_runtime_s is not None else ""
        cpu_rate = (f"{report['events_per_cpu_s']:,.0f} ev/cpu-s"
                    if report["events_per_cpu_s"] is not None else "n/a ev/cpu-s")
        print(f"flink {flink_version} {args.query} p={args.parallelism}: {events:,} events, "
              f"{wall_s:.2f} s wall ({report['events_per_s']:,.0f} ev/s), "
              f"{cpu_s:.2f} s JVM CPU ({cpu_rate}){net}; not counted: JVM start-up "
              f"{startup_s:.2f} s, warm-up run on empty input {empty_run_s:.2f} s")
    sys.stdout.flush()
    stop_jvm(pids)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
