/**
 * A code or refresh token is consumed last, after the tokens it buys are made and stored: when the
 * store fails in between (PostgreSQL restarting), the client gets a 503 and its retry works. Found
 * by the PostgreSQL restart fault under load (issue 12): a rotation that consumed the old refresh
 * token and then could not store the new one turned the client's retry into "reuse", and the whole
 * family was revoked — the user signed out by an outage.
 *
 * The failure is made real and exact: a trigger in this test's own PostgreSQL schema refuses to
 * store refresh tokens with SQLSTATE 57P01 (what a server shutting down answers), so the write
 * after the checks fails while every read before it works.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startTestServer, pgSchema, PG_URL, type TestServer } from './harness.ts';
import { BOB, Browser, WEB, authorizeUrl, pkce, redeem, runFlow, webParams } from './signin-kit.ts';

let server: TestServer;
let schema: Awaited<ReturnType<typeof pgSchema>>;
let admin: pg.Client;

before(async () => {
  schema = await pgSchema();
  server = await startTestServer({ tls: 'dev', storeUrl: PG_URL, storeSchema: schema.schema, env: { BATON_KEK: randomBytes(32).toString('base64url') } });
  admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE FUNCTION ${schema.schema}.refuse_refresh_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'terminating connection due to administrator command' USING ERRCODE = '57P01'; END $$`);
});
after(async () => {
  await server?.close();
  await admin?.end();
  await schema?.drop();
});

/** While on, every INSERT of a refresh token fails as a database going down would. */
async function refreshTokenWrites(on: boolean): Promise<void> {
  await admin.query(
    on
      ? `CREATE TRIGGER refuse_refresh_tokens BEFORE INSERT ON ${schema.schema}.ephemeral FOR EACH ROW WHEN (NEW.kind = 'refresh') EXECUTE FUNCTION ${schema.schema}.refuse_refresh_tokens()`
      : `DROP TRIGGER refuse_refresh_tokens ON ${schema.schema}.ephemeral`,
  );
}

function assertRetryLater(response: { status: number; headers: Headers; body: any }): void {
  assert.equal(response.status, 503, JSON.stringify(response.body));
  assert.equal(response.body.error, 'temporarily_unavailable');
  assert.equal(response.headers.get('retry-after'), '2');
}

test('the store failing after the checks: the code, then the refresh token, stay usable for the retry', async () => {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: BOB });
  const code = flow.params?.code;
  assert.ok(code, `${flow.seen.join(',')} ${flow.hop.status} ${flow.hop.body?.slice?.(0, 600)}`);

  await refreshTokenWrites(true);
  assertRetryLater(await redeem(server, code, verifier));
  await refreshTokenWrites(false);
  const tokens = await redeem(server, code, verifier);
  assert.equal(tokens.status, 200, `the retry of the code works: ${JSON.stringify(tokens.body)}`);
  assert.ok(tokens.body.refresh_token);

  const refresh = (token: string) => server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: token });
  await refreshTokenWrites(true);
  assertRetryLater(await refresh(tokens.body.refresh_token));
  await refreshTokenWrites(false);
  const rotated = await refresh(tokens.body.refresh_token);
  assert.equal(rotated.status, 200, `the retry of the rotation works, the family is intact: ${JSON.stringify(rotated.body)}`);
  const next = await refresh(rotated.body.refresh_token);
  assert.equal(next.status, 200, 'and the family goes on');

  // Single use still holds: the token that was rotated is reuse now.
  const reuse = await refresh(tokens.body.refresh_token);
  assert.deepEqual(reuse.body.error_codes, [70000]);
});
