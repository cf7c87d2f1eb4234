// node-postgres (pg) against `weir serve`: simple protocol without parameters, unnamed
// extended protocol (text format) with them, named statements, and error recovery.
//
// Starts its own server like tests/clients/conftest.py does; WEIR_TEST_PG=host:port points it
// at a server that is already running instead.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function healthy(httpPort) {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

class Server {
  async start() {
    if (process.env.WEIR_TEST_PG) {
      const [host, port] = process.env.WEIR_TEST_PG.split(':');
      this.host = host || '127.0.0.1';
      this.port = Number(port);
      return;
    }
    const bin = path.resolve(ROOT, process.env.WEIR_BIN || 'target/debug/weir');
    assert.ok(fs.existsSync(bin), `server binary ${bin} not found; build it or set WEIR_BIN`);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-node-'));
    this.logPath = path.join(this.dir, 'weir-server.log');
    this.host = '127.0.0.1';
    this.port = await freePort();
    let httpPort = await freePort();
    while (httpPort === this.port) httpPort = await freePort();
    const log = fs.openSync(this.logPath, 'w');
    this.proc = spawn(
      bin,
      ['serve', '--sql-dir', path.join(ROOT, 'tests/fixtures/sql'),
        '--pg-listen', `127.0.0.1:${this.port}`, '--http-listen', `127.0.0.1:${httpPort}`,
        '--flight-listen', '127.0.0.1:0',
        '--data-dir', path.join(this.dir, 'data'),
        // The fixtures read the repository's data.
        '--storage-allowed-locations', ROOT],
      { cwd: ROOT, stdio: ['ignore', log, log] },
    );
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    let status = null;
    this.exited.then((s) => { status = s; });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await healthy(httpPort))) {
      if (status) throw new Error(`weir exited (${JSON.stringify(status)}) before it was ready\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`weir not ready after ${READY_TIMEOUT_MS / 1000}s\n${this.logTail()}`);
      await delay(100); // readiness polling interval
    }
  }

  logTail() {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-60).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  async stop() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timeout = delay(STOP_TIMEOUT_MS).then(() => null);
    const result = await Promise.race([this.exited, timeout]);
    if (result === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`weir did not stop within ${STOP_TIMEOUT_MS / 1000}s of SIGTERM\n${this.logTail()}`);
    }
    assert.equal(result.code, 0, `weir exited with ${JSON.stringify(result)} after SIGTERM\n${this.logTail()}`);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const server = new Server();
let client;

function connect() {
  return new pg.Client({
    host: server.host, port: server.port, user: 'tester', database: 'weir',
    application_name: 'weir-tests-node', connectionTimeoutMillis: 10_000,
  });
}

before(async () => {
  await server.start();
  client = connect();
  await client.connect();
});

after(async () => {
  if (client) await client.end();
  await server.stop();
});

const OID = { bool: 16, int8: 20, int2: 21, int4: 23, text: 25, float4: 700, float8: 701, varchar: 1043, date: 1082, timestamp: 1114, timestamptz: 1184, numeric: 1700 };
const TYPED = 'SELECT id, small, big, real_val, double_val, amount, label, flag, day, ts, tstz FROM typed ORDER BY id';

// pg parses date and timestamp (without time zone) as local time: compare their local fields.
const localParts = (d) => [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];

describe('node-postgres', () => {
  test('server reports PostgreSQL 16', async () => {
    const { rows } = await client.query('SHOW server_version');
    assert.match(rows[0].server_version, /^16\./);
    const v = await client.query('select version()');
    assert.match(v.rows[0].version, /PostgreSQL \d+\.\d+/);
  });

  test('simple query without parameters', async () => {
    const res = await client.query('SELECT id, label FROM typed ORDER BY id');
    assert.equal(res.command, 'SELECT');
    assert.equal(res.rowCount, 4);
    assert.deepEqual(res.rows, [
      { id: 1, label: 'alpha' },
      { id: 2, label: 'béta, with comma' },
      { id: 3, label: '' },
      { id: 4, label: null },
    ]);
  });

  test('several statements in one simple query', async () => {
    const res = await client.query("SELECT id FROM typed WHERE id = 1; SELECT 'two' AS b");
    assert.ok(Array.isArray(res), 'pg returns one result per statement');
    assert.deepEqual(res.map((r) => r.rows), [[{ id: 1 }], [{ b: 'two' }]]);
  });

  test('integer literals are int4, as in PostgreSQL', async () => {
    // pg turns int4 into a number but leaves int8 as a string, so the literal's type shows.
    for (const res of [await client.query('SELECT 1 AS a'), await client.query('SELECT 1 AS a WHERE $1::int4 = 1', [1])]) {
      assert.equal(res.fields[0].dataTypeID, OID.int4);
      assert.deepEqual(res.rows, [{ a: 1 }]);
    }
  });

  test('count(*) is named count and is int8 (a string in pg)', async () => {
    const res = await client.query('SELECT count(*) FROM sales WHERE city = $1', ['Paris']);
    assert.equal(res.fields[0].dataTypeID, OID.int8);
    assert.deepEqual(res.rows, [{ count: '3' }]);
  });

  test('extended protocol with parameters', async () => {
    let res = await client.query('SELECT label FROM typed WHERE id = $1', [2]);
    assert.deepEqual(res.rows, [{ label: 'béta, with comma' }]);
    res = await client.query('SELECT id FROM typed WHERE label = $1', ['alpha']);
    assert.deepEqual(res.rows, [{ id: 1 }]);
    res = await client.query('SELECT id FROM typed WHERE flag = $1 ORDER BY id', [true]);
    assert.deepEqual(res.rows, [{ id: 1 }, { id: 3 }]);
    res = await client.query('SELECT id FROM typed WHERE tstz = $1', [new Date(Date.UTC(2000, 1, 29, 12, 0, 0, 250))]);
    assert.deepEqual(res.rows, [{ id: 2 }]);
    res = await client.query('SELECT id FROM typed WHERE amount > $1 ORDER BY id', ['0']);
    assert.deepEqual(res.rows, [{ id: 1 }]);
    res = await client.query('SELECT city, amount FROM paris_sales WHERE amount > $1 ORDER BY amount', [50]);
    assert.deepEqual(res.rows, [{ city: 'Paris', amount: '89.90' }, { city: 'Paris', amount: '120.50' }]);
    res = await client.query('SELECT $1::text AS t, $2::int4 AS n', ["it's", null]);
    assert.deepEqual(res.rows, [{ t: "it's", n: null }]);
  });

  test('named prepared statement', async () => {
    for (const [id, label] of [[1, 'alpha'], [3, ''], [4, null], [2, 'béta, with comma']]) {
      const res = await client.query({ name: 'label-by-id', text: 'SELECT label FROM typed WHERE id = $1', values: [id] });
      assert.deepEqual(res.rows, [{ label }]);
    }
  });

  for (const [mode, run] of [
    ['simple', () => client.query(TYPED)],
    ['extended', () => client.query({ text: TYPED.replace('ORDER BY id', 'WHERE id >= $1 ORDER BY id'), values: [1] })],
  ]) {
    test(`typed values (${mode} protocol)`, async () => {
      const res = await run();
      const types = Object.fromEntries(res.fields.map((f) => [f.name, f.dataTypeID]));
      assert.deepEqual(types, {
        id: OID.int4, small: OID.int2, big: OID.int8, real_val: OID.float4, double_val: OID.float8,
        amount: OID.numeric, label: types.label === OID.varchar ? OID.varchar : OID.text, flag: OID.bool,
        day: OID.date, ts: OID.timestamp, tstz: OID.timestamptz,
      });
      const [r1, r2, r3, r4] = res.rows;

      assert.equal(r1.id, 1);
      assert.equal(r1.small, -7);
      assert.equal(r1.big, '9007199254740993'); // int8 stays a string in pg
      assert.equal(r1.real_val, 1.5);
      assert.equal(r1.double_val, 3.141592653589793);
      assert.equal(r1.amount, '1234.567'); // numeric stays a string in pg
      assert.equal(r1.label, 'alpha');
      assert.equal(r1.flag, true);
      assert.ok(r1.day instanceof Date);
      assert.deepEqual(localParts(r1.day).slice(0, 3), [2026, 11, 21]);
      assert.ok(r1.ts instanceof Date);
      assert.deepEqual(localParts(r1.ts), [2026, 11, 21, 10, 15, 0, 0]);
      assert.ok(r1.tstz instanceof Date);
      assert.equal(r1.tstz.getTime(), Date.UTC(2026, 10, 21, 10, 15, 0));

      assert.equal(r2.small, 0);
      assert.equal(r2.big, '-1');
      assert.equal(r2.real_val, -0.25);
      assert.equal(r2.double_val, -2.5e-10);
      assert.equal(r2.amount, '-0.001');
      assert.equal(r2.label, 'béta, with comma');
      assert.equal(r2.flag, false);
      assert.deepEqual(localParts(r2.day).slice(0, 3), [1999, 12, 31]);
      assert.deepEqual(localParts(r2.ts), [2026, 11, 21, 23, 59, 59, 500]);
      assert.equal(r2.tstz.getTime(), Date.UTC(2000, 1, 29, 12, 0, 0, 250));

      assert.equal(r3.small, 32767);
      assert.equal(r3.big, '0');
      assert.equal(r3.real_val, 3);
      assert.equal(r3.double_val, 1e20);
      assert.equal(r3.amount, '0.000');
      assert.equal(r3.label, '');
      assert.equal(r3.flag, true);
      assert.deepEqual(localParts(r3.day).slice(0, 3), [1970, 1, 1]);
      assert.deepEqual(localParts(r3.ts), [1970, 1, 1, 0, 0, 0, 0]);
      assert.equal(r3.tstz.getTime(), 0);

      assert.deepEqual(r4, {
        id: 4, small: null, big: null, real_val: null, double_val: null, amount: null,
        label: null, flag: null, day: null, ts: null, tstz: null,
      });
    });
  }

  test('undefined table raises 42P01 and the client keeps working', async () => {
    await assert.rejects(client.query('SELECT * FROM no_such_table'), (err) => {
      assert.equal(err.code, '42P01');
      return true;
    });
    let res = await client.query('SELECT count(*)::int4 AS n FROM typed');
    assert.deepEqual(res.rows, [{ n: 4 }]);

    await assert.rejects(client.query('SELECT * FROM no_such_table WHERE x = $1', [1]), (err) => {
      assert.equal(err.code, '42P01');
      return true;
    });
    res = await client.query('SELECT label FROM typed WHERE id = $1', [1]);
    assert.deepEqual(res.rows, [{ label: 'alpha' }]);

    await assert.rejects(client.query('SELEC 1'), (err) => {
      assert.equal(err.code, '42601');
      return true;
    });
    res = await client.query('SELECT label FROM typed WHERE id = 3');
    assert.deepEqual(res.rows, [{ label: '' }]);
  });

  test('pool runs queries on several connections', async () => {
    const pool = new pg.Pool({ host: server.host, port: server.port, user: 'tester', database: 'weir', max: 2 });
    try {
      const counts = await Promise.all(
        ['Electronics', 'Books', 'Sports', 'Home'].map((c) =>
          pool.query('SELECT count(*)::int4 AS n FROM products WHERE category = $1', [c]).then((r) => r.rows[0].n)),
      );
      assert.deepEqual(counts, [3, 2, 2, 2]);
    } finally {
      await pool.end();
    }
  });
});
