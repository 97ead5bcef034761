/**
 * Slow or stuck clients against a real `baton serve` (a child process, so its connections do not
 * share this process's descriptors): slowloris headers, a trickled body, and a crowd of idle
 * connections. The server keeps answering others throughout, and cuts the slow ones off with a 408
 * in the OAuth error shape (http/transport.ts, http/client-error.ts). The timeouts are shortened in
 * the configuration so the test runs in seconds; what is asserted is behaviour, not durations.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, CONFIG, type Served } from '../../../reliability/lib/serve.ts';

let served: Served;
let dir: string;
let port: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-slow-'));
  const config = JSON.parse(await readFile(CONFIG, 'utf8'));
  config.http = { headersTimeoutMs: 1500, requestTimeoutMs: 3000, checkIntervalMs: 200 };
  await writeFile(join(dir, 'baton.json'), JSON.stringify(config));
  served = await serve({ config: join(dir, 'baton.json'), dataDir: join(dir, 'data') });
  port = Number(new URL(served.url).port);
});
after(async () => {
  await served.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Conn {
  socket: Socket;
  received: string;
  closed: Promise<void>;
}

function open(): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const conn: Conn = { socket, received: '', closed: new Promise((r) => socket.once('close', () => r())) };
    socket.on('error', () => {}); // a reset by the server closing a connection we were still writing to
    socket.on('data', (chunk) => (conn.received += chunk.toString()));
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

async function discovery(): Promise<number> {
  const response = await fetch(`${served.url}/contoso/v2.0/.well-known/openid-configuration`);
  await response.arrayBuffer();
  return response.status;
}

/**
 * Every slow connection was cut off: a 408 in the OAuth error shape, or — when the client was still
 * writing as the server closed, and the kernel's reset overtook the answer — nothing. At least one
 * must show the 408, so the shape is checked.
 */
function assertAllCutOff(conns: Conn[]): void {
  assert.ok(conns.every((c) => c.socket.destroyed));
  const answered = conns.filter((c) => c.received !== '');
  assert.ok(answered.length > 0, 'at least one connection read its 408');
  for (const conn of answered) assertTimedOut(conn);
}

/** A 408 in the OAuth error shape, then the connection closed by the server. */
function assertTimedOut(conn: Conn): void {
  assert.match(conn.received, /^HTTP\/1\.1 408 /, conn.received.slice(0, 200));
  const body = JSON.parse(conn.received.slice(conn.received.indexOf('\r\n\r\n') + 4));
  assert.deepEqual(body, { error: 'invalid_request', error_description: 'AADSTS900144: The request did not arrive in time.', error_codes: [900144] });
}

/**
 * Keeps `drip` trickling into every slow connection that has had no answer yet (every 100 ms), and
 * meanwhile asks for discovery on a fresh connection, until the server has closed every slow one.
 * Returns the statuses the other requests got during the attack.
 */
async function trickleUntilCutOff(slow: Conn[], drip: string): Promise<number[]> {
  let ticking = true;
  const trickle = (async () => {
    while (ticking) {
      for (const conn of slow) if (!conn.socket.destroyed && conn.received === '') conn.socket.write(drip);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const answered: number[] = [];
  while (slow.some((c) => !c.socket.destroyed)) answered.push(await discovery());
  ticking = false;
  await trickle;
  await Promise.all(slow.map((c) => c.closed));
  return answered;
}

test('slowloris headers: trickling connections get 408 and are closed; others are answered meanwhile', async () => {
  const slow = await Promise.all(Array.from({ length: 50 }, open));
  for (const conn of slow) conn.socket.write('POST /contoso/oauth2/v2.0/token HTTP/1.1\r\nHost: localhost\r\n');
  const answered = await trickleUntilCutOff(slow, 'X-Slow: a\r\n');
  assertAllCutOff(slow);
  assert.ok(answered.length > 0 && answered.every((s) => s === 200), `others answered during the attack: ${answered.length}`);
});

test('a trickled body: 408 once the whole request is overdue; others are answered meanwhile', async () => {
  const slow = await Promise.all(Array.from({ length: 20 }, open));
  for (const conn of slow) {
    conn.socket.write('POST /contoso/oauth2/v2.0/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4096\r\n\r\ngrant_type=');
  }
  const answered = await trickleUntilCutOff(slow, 'a');
  assertAllCutOff(slow);
  assert.ok(answered.length > 0 && answered.every((s) => s === 200));
});

test('2,000 idle connections that never send a byte: others are answered, and the idle ones are closed', async () => {
  const idle: Conn[] = [];
  for (let i = 0; i < 2000; i += 200) idle.push(...(await Promise.all(Array.from({ length: 200 }, open))));
  const answered: number[] = [];
  for (let i = 0; i < 20; i++) answered.push(await discovery());
  assert.deepEqual([...new Set(answered)], [200]);
  await Promise.all(idle.map((c) => c.closed));
  assert.ok(idle.every((c) => c.socket.destroyed));
  assert.equal(await discovery(), 200);
});
