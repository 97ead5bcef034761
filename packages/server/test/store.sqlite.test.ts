/**
 * The store contract on SQLite — in memory, and on one file through two connections (which is how
 * two processes share it) — plus what only SQLite has: the file layout, WAL, migrations racing in
 * separate threads, the query plans, and the change log read by other connections.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { ConfigurationError } from '@baton/core';
import { openStore } from '../src/store/index.ts';
import { MIGRATIONS } from '../src/store/migrations.ts';
import { consentListSql } from '../src/store/sqlite.ts';
import type { Invalidation, Store } from '../src/store/types.ts';
import { storeContract } from './store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

storeContract('sqlite in memory', () => openStore({ url: 'sqlite::memory:' }));

const shared = join(dir, 'shared');
storeContract(
  'sqlite file, two connections',
  () => openStore({ dataDir: shared }),
  () => openStore({ dataDir: shared }),
);

describe('sqlite engine', () => {
  it('openStore puts baton.sqlite in dataDir (created owner-only) in WAL mode', async () => {
    const dataDir = join(dir, 'fresh', 'nested');
    const store = await openStore({ dataDir });
    try {
      assert.equal(store.engine, 'sqlite');
      const file = join(dataDir, 'baton.sqlite');
      assert.ok(existsSync(file));
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);
      const db = new DatabaseSync(file);
      try {
        assert.deepEqual({ ...db.prepare('PRAGMA journal_mode').get() }, { journal_mode: 'wal' });
        const versions = db.prepare('SELECT version, name FROM baton_migrations ORDER BY version').all().map((row) => ({ ...row }));
        assert.deepEqual(versions, MIGRATIONS.map(({ version, name }) => ({ version, name })));
      } finally {
        db.close();
      }
    } finally {
      await store.close();
    }
  });

  it('openStore refuses a missing location or an unknown scheme, without echoing the URL', async () => {
    await assert.rejects(openStore({}), ConfigurationError);
    await assert.rejects(openStore({ url: 'sqlite:' }), ConfigurationError);
    await assert.rejects(openStore({ url: 'mysql://root:hunter2@db.internal/baton' }), (error: unknown) => {
      assert.ok(error instanceof ConfigurationError);
      assert.doesNotMatch(error.message, /hunter2|db\.internal/);
      assert.match(error.message, /mysql/);
      return true;
    });
  });

  it('openStore accepts sqlite:<path>', async () => {
    const file = join(dir, 'explicit.sqlite');
    const store = await openStore({ url: `sqlite:${file}` });
    await store.close();
    assert.ok(existsSync(file));
  });

  it('a database migrated by a newer Baton, or with a rewritten history, is refused', async () => {
    for (const [version, name, message] of [
      [999, 'from the future', /newer than this Baton/],
      [1, 'edited', /recorded as "edited"/],
    ] as const) {
      const file = join(dir, `history-${version}.sqlite`);
      await (await openStore({ url: `sqlite:${file}` })).close();
      const db = new DatabaseSync(file);
      db.prepare('INSERT OR REPLACE INTO baton_migrations (version, name) VALUES (?, ?)').run(version, name);
      db.close();
      await assert.rejects(openStore({ url: `sqlite:${file}` }), message);
    }
  });

  it('migrations racing in four threads on a fresh file all succeed, once', async () => {
    const file = join(dir, 'race.sqlite');
    const moduleUrl = new URL('../src/store/sqlite.ts', import.meta.url).href;
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.moduleUrl).then(async ({ SqliteStore }) => {
        const store = new SqliteStore(workerData.file);
        await store.migrate();
        await store.putTenant({ id: 'w' + workerData.i, tid: 'x', name: 'w', maxDelegationDepth: 1 });
        await store.close();
        parentPort.postMessage('ok');
      }).catch((error) => parentPort.postMessage(String(error)));`;
    const results = await Promise.all(
      Array.from(
        { length: 4 },
        (_, i) =>
          new Promise<unknown>((resolve, reject) => {
            const worker = new Worker(code, { eval: true, workerData: { moduleUrl, file, i } });
            worker.once('message', resolve);
            worker.once('error', reject);
          }),
      ),
    );
    assert.deepEqual(results, ['ok', 'ok', 'ok', 'ok']);
    const store = await openStore({ url: `sqlite:${file}` });
    try {
      assert.deepEqual((await store.listTenants()).map((t) => t.id), ['w0', 'w1', 'w2', 'w3']);
    } finally {
      await store.close();
    }
    const db = new DatabaseSync(file);
    try {
      assert.deepEqual({ ...db.prepare('SELECT count(*) AS n FROM baton_migrations').get() }, { n: MIGRATIONS.length });
    } finally {
      db.close();
    }
  });

  it('a proof replay record survives its process being killed right after the write (no fsync, still durable to a process crash)', async () => {
    const file = join(dir, 'killed.sqlite');
    await (await openStore({ url: `sqlite:${file}` })).close();
    const moduleUrl = new URL('../src/store/sqlite.ts', import.meta.url).href;
    // The child records the jti and is SIGKILLed by itself the moment the write returns: no
    // close(), no checkpoint, no exit handler — what a crash leaves on the file is all there is.
    const code = `
      import(${JSON.stringify(moduleUrl)}).then(async ({ SqliteStore }) => {
        const store = new SqliteStore(${JSON.stringify(file)});
        await store.migrate();
        if (await store.useProofOnce('dpop:t', 'jkt:jti-killed', 1000, 1)) process.kill(process.pid, 'SIGKILL');
        process.exit(3);
      });`;
    const child = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    const store = await openStore({ url: `sqlite:${file}` });
    try {
      assert.equal(await store.useProofOnce('dpop:t', 'jkt:jti-killed', 1000, 2), false);
      assert.equal(await store.useProofOnce('dpop:t', 'jkt:jti-other', 1000, 2), true);
    } finally {
      await store.close();
    }
  });

  it('every listConsents shape is an index search on all its filters, never a scan', async () => {
    const file = join(dir, 'plans.sqlite');
    await (await openStore({ url: `sqlite:${file}` })).close();
    const db = new DatabaseSync(file);
    try {
      for (let mask = 0; mask < 8; mask++) {
        const columns = ['tenant_id', ...(mask & 1 ? ['client_id'] : []), ...(mask & 2 ? ['resource'] : []), ...(mask & 4 ? ['principal'] : [])];
        const params = columns.map(() => 'x');
        const plan = db
          .prepare(`EXPLAIN QUERY PLAN ${consentListSql(mask)}`)
          .all(...params)
          .map((row) => String(row.detail));
        const search = plan.find((line) => line.startsWith('SEARCH consents'));
        assert.ok(search, `mask ${mask}: ${plan.join(' / ')}`);
        for (const column of columns) assert.match(search, new RegExp(`\\b${column}=\\?`), `mask ${mask}: ${search}`);
        assert.equal(plan.filter((line) => line.startsWith('SCAN')).length, 0, `mask ${mask}: ${plan.join(' / ')}`);
      }
    } finally {
      db.close();
    }
  });

  it('a connection that fell behind the change log hears "everything changed"', async () => {
    const file = join(dir, 'behind.sqlite');
    const store: Store = await openStore({ url: `sqlite:${file}` });
    try {
      const heard = new Promise<Invalidation>((resolve) => {
        const stop = store.onInvalidate((change) => {
          stop();
          resolve(change);
        });
      });
      // Another process writing more changes than the log keeps between two polls.
      const db = new DatabaseSync(file);
      try {
        db.exec('BEGIN');
        const insert = db.prepare("INSERT INTO baton_changes (tenant_id, entity) VALUES ('t', 'user')");
        for (let i = 0; i < 1500; i++) insert.run();
        db.exec('COMMIT');
      } finally {
        db.close();
      }
      assert.deepEqual(await heard, { tenantId: '*', entity: '*' });
    } finally {
      await store.close();
    }
  });
});
