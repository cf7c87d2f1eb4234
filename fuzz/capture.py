"""Writes the fuzz seed corpus (fuzz/corpus/<target>/) from real clients.

A proxy on a free loopback port records what each client connection sends to a running
`weir serve`, while psql, psycopg 3 (simple, prepared, binary), psycopg2 and asyncpg
run a few statements through it. Each connection's bytes become one `startup` seed
(from its first byte); what follows start-up becomes a `messages` seed (with the
leading protocol byte that target reads) and, when it has Parse/Bind, a
`bind_params` seed; the start-up packets are `refuse` seeds.

    python fuzz/capture.py 127.0.0.1:5433     # a weir serve listening there
"""

import asyncio
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def proxy(upstream, conns):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)

    def pump(src, dst, record):
        try:
            while data := src.recv(65536):
                if record is not None:
                    record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            client, _ = lst.accept()
            server = socket.create_connection(upstream)
            record = bytearray()
            conns.append(record)
            threading.Thread(target=pump, args=(client, server, record), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, None), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return lst.getsockname()[1]


def run_clients(port):
    dsn = f"host=127.0.0.1 port={port} dbname=weir user=fuzz"
    subprocess.run(
        ["psql", dsn, "-c", "SELECT 1 AS one, 'a' AS t", "-c", "\\d"],
        check=True, capture_output=True,
    )
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1").fetchall()
        conn.execute("SELECT %s::int + 1, %s::text, %s::float8", (41, "x", 2.5)).fetchall()
        conn.execute("SELECT %s::timestamp, %s::date, %s::numeric",
                     ("2026-11-21 10:15:00", "2026-11-21", "12.50"), prepare=True).fetchall()
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT %s::bigint, %s::bool", (7, True)).fetchall()
    import psycopg2

    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT %s + 1", (1,))
        cur.fetchall()
    conn.close()
    import asyncpg

    async def go():
        c = await asyncpg.connect(host="127.0.0.1", port=port, user="fuzz", database="weir")
        await c.fetch("SELECT $1::int8 * 2, $2::text", 21, "y")
        await c.fetch("SELECT $1::interval, $2::float4[]", __import__("datetime").timedelta(seconds=90), [1.5, 2.0])
        await c.close()

    asyncio.run(go())


def frames_after_startup(data):
    """Offset of the first byte after SSL/GSS requests and the start-up packet."""
    at = 0
    while at + 8 <= len(data):
        (length, code) = struct.unpack_from(">ii", data, at)
        at += length
        if code not in (80877103, 80877104):
            return at, data[at - length:at]
    return None, None


def save(target, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def msg(tag, body):
    return tag + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup_packet(version=196608, **params):
    body = struct.pack(">i", version) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return struct.pack(">i", len(body) + 4) + body


def spec_seeds():
    """Messages the captured clients do not send, written from the protocol spec."""
    ssl = struct.pack(">ii", 8, 80877103)
    gss = struct.pack(">ii", 8, 80877104)
    cancel = struct.pack(">iiii", 16, 80877102, 1234, 5678)
    hello = startup_packet(user="fuzz", database="weir", application_name="seed")
    save("startup", gss + ssl + hello + msg(b"Q", cstr("SELECT 1")) + msg(b"X", b""))
    save("startup", cancel)
    save("startup", ssl + cancel)
    save("startup", startup_packet(196610, user="fuzz") + msg(b"X", b""))  # protocol 3.2
    save("startup", startup_packet(0x00040000, user="fuzz"))
    save("refuse", ssl + gss + hello)
    save("refuse", cancel)
    copy = (msg(b"Q", cstr("COPY t FROM STDIN")) + msg(b"d", b"1\ta\n") + msg(b"d", b"2\tb\n")
            + msg(b"c", b"") + msg(b"f", cstr("client gave up")))
    sasl = (msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 8) + b"n,,n=,r=")
            + msg(b"p", b"c=biws,r=abc,p=xyz") + msg(b"p", cstr("secret")))
    extended = (msg(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack(">hi", 1, 23))
                + msg(b"B", cstr("p1") + cstr("s1") + struct.pack(">hhh", 1, 1, 1) + struct.pack(">i", 4)
                      + struct.pack(">i", 42) + struct.pack(">hh", 1, 1))
                + msg(b"D", b"P" + cstr("p1")) + msg(b"E", cstr("p1") + struct.pack(">i", 10))
                + msg(b"H", b"") + msg(b"C", b"P" + cstr("p1")) + msg(b"C", b"S" + cstr("s1"))
                + msg(b"S", b""))
    for proto in (b"\x00", b"\x01"):
        save("messages", proto + copy)
        save("messages", proto + sasl)
        save("messages", proto + extended + msg(b"X", b""))
    save("bind_params", extended)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    conns = []
    run_clients(proxy((host, int(port)), conns))
    for data in conns:
        data = bytes(data)
        if not data:
            continue
        save("startup", data)
        at, packet = frames_after_startup(data)
        if at is None:
            continue
        save("refuse", packet)
        rest = data[at:]
        if rest:
            save("messages", b"\x00" + rest)
            if b"B" in rest:
                save("bind_params", rest)
    spec_seeds()


if __name__ == "__main__":
    main()
