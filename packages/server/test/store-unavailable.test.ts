/**
 * A store that cannot be reached (PostgreSQL restarting, the network, SQLite locked past its busy
 * timeout) is a 503 `temporarily_unavailable` with Retry-After, never a 500: the request did
 * nothing, and the client should retry. Any other unexpected error stays a plain 500.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { storeUnavailable, toOAuthError } from '../src/http/errors.ts';

test('connection-level store failures map to 503 temporarily_unavailable + Retry-After', () => {
  const failures = [
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
    Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
    Object.assign(new Error('connection failure'), { code: '08006' }),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
    Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 }),
  ];
  for (const failure of failures) {
    assert.ok(storeUnavailable(failure), failure.message);
    const oauth = toOAuthError(failure);
    assert.equal(oauth.status, 503);
    assert.equal(oauth.error, 'temporarily_unavailable');
    assert.equal(oauth.headers['retry-after'], '2');
    assert.equal(oauth.expose, true, 'temporarily_unavailable is shown as such (the client should retry)');
    assert.equal(oauth.toJSON().error, 'temporarily_unavailable');
  }
});

test('other errors stay a plain 500 server_error', () => {
  for (const error of [new TypeError("Cannot read properties of undefined (reading 'x')"), Object.assign(new Error('duplicate key'), { code: '23505' }), 'a string', null]) {
    assert.equal(storeUnavailable(error), false);
    assert.equal(toOAuthError(error).status, 500);
  }
});
