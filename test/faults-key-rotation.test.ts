/**
 * `baton keys rotate` under load through two `baton serve` instances on PostgreSQL (issue 12):
 * client-credentials tokens and On-Behalf-Of exchanges at both, the user's assertion and every
 * issued token validated by the SDK guard, a user token signed with the new key joining the load —
 * zero failed validations, both instances signing with the new key afterwards. The scenario is
 * reliability/lib/key-rotation.ts (also `npm run faults -- key-rotation`); it starts its own PostgreSQL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresBinaries } from '../reliability/lib/postgres.ts';
import { keyRotationUnderLoad } from '../reliability/lib/key-rotation.ts';

const unavailable = process.getuid?.() !== 0 ? 'needs root to run its own PostgreSQL as the postgres user' : (await postgresBinaries()) === undefined ? 'no PostgreSQL server binaries' : false;

test('keys rotated while two instances issue and exchange tokens: zero failed validations, both on the new key', { skip: unavailable, timeout: 240_000 }, async () => {
  const figures = await keyRotationUnderLoad({ loadBeforeSeconds: 2, loadAfterSeconds: 3, workers: 2 });
  const report = JSON.stringify(figures);
  assert.equal(figures.failedValidations, 0, report);
  assert.equal(figures.rotateExitCode, 0, report);
  assert.equal(figures.newKidPerInstance, '1/1', `each instance signed with the new key: ${report}`);
  assert.ok((figures.exchanges as number) > 0 && (figures.userTokensWithNewKeyValidated as number) > 0, report);
  assert.equal(figures.ok, true, report);
});
