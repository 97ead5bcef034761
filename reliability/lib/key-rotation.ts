/**
 * The key rotation fault: `baton keys rotate` (a third process on the database) while two
 * `baton serve` instances on a PostgreSQL of the run's own mint tokens and exchange them
 * On-Behalf-Of, every token validated by the SDK guard. Used by `npm run faults -- key-rotation`
 * and test/faults-key-rotation.test.ts.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createGuard } from '../../packages/resource/src/index.ts';
import { BIN, SECRETS, issueUserToken, serveInstances } from './serve.ts';
import { OwnPostgres } from './postgres.ts';

export interface KeyRotationOptions {
  /** Load before the rotation and after it (seconds). */
  loadBeforeSeconds: number;
  loadAfterSeconds: number;
  /** Concurrent clients (each alternates the two instances). */
  workers: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * key-rotation: `baton keys rotate` (a third process on the database) while two instances behind one
 * public URL mint tokens and exchange them On-Behalf-Of, every token validated by the SDK guard as the
 * APIs of the chain do (the Tasks API's guard for the user's token, the Docs API's for what the
 * exchange and client credentials give): zero failed validations, both instances on the new key after.
 */
export async function keyRotationUnderLoad(options: KeyRotationOptions): Promise<Record<string, number | string | boolean>> {
  const database = await OwnPostgres.create();
  const { publicUrl, env, instances } = await serveInstances(database.url);
  const authority = `${publicUrl}/contoso/v2.0`;
  const tasksGuard = createGuard({ authority, audience: 'tasks-api' });
  const docsGuard = createGuard({ authority, audience: 'docs-api' });
  const basic = (id: string) => `Basic ${Buffer.from(`${id}:${SECRETS[id]}`).toString('base64')}`;
  const userToken = (user: string) => issueUserToken(instances[0]!.served, user, { args: ['--store', database.url], env });
  const assertions = [await userToken('alice@contoso.test'), await userToken('bob@contoso.test')];
  const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()).kid as string;
  const kids = instances.map(() => new Set<string>());
  const counts = { clientCredentials: 0, exchanges: 0, validated: 0, newKeyAssertionsValidated: 0, failed: 0 };
  const samples: string[] = [];
  const mint = async (base: string, body: Record<string, string>, authorization: string): Promise<string> => {
    const response = await fetch(`${base}/contoso/oauth2/v2.0/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization }, body: new URLSearchParams(body).toString(), signal: AbortSignal.timeout(10_000) });
    const answer = (await response.json()) as { access_token?: string };
    if (answer.access_token === undefined) throw new Error(`token endpoint ${base}: ${response.status} ${JSON.stringify(answer).slice(0, 160)}`);
    return answer.access_token;
  };
  const validated = async (guard: typeof docsGuard, jwt: string) => {
    await guard.verify(`Bearer ${jwt}`);
    counts.validated++;
  };
  let stop = false;
  const loop = async (w: number) => {
    for (let round = 0; !stop; round++) {
      const i = (w + round) % instances.length;
      const base = instances[i]!.base;
      try {
        const app = await mint(base, { grant_type: 'client_credentials', scope: 'api://docs/.default' }, basic('indexer'));
        counts.clientCredentials++;
        kids[i]!.add(kidOf(app));
        await validated(docsGuard, app);
        // The chain's hop: the Tasks API validates the user's token, then exchanges it at this instance.
        const n = round % assertions.length;
        const assertion = assertions[n]!;
        await validated(tasksGuard, assertion);
        if (n === 2) counts.newKeyAssertionsValidated++;
        const obo = await mint(base, { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' }, basic('tasks-api'));
        counts.exchanges++;
        kids[i]!.add(kidOf(obo));
        await validated(docsGuard, obo);
      } catch (error) {
        counts.failed++;
        if (samples.length < 5) samples.push((error as Error).message.slice(0, 200));
      }
    }
  };
  const loops = Array.from({ length: options.workers }, (_, w) => loop(w));
  await sleep(options.loadBeforeSeconds * 1000);
  const kidsBefore = new Set(kids.flatMap((set) => [...set]));
  const rotate = spawn(process.execPath, [BIN, 'keys', 'rotate', '--store', database.url, '--tenant', 'contoso'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const rotated = await new Promise<number | null>((r) => rotate.once('exit', r));
  // A user token signed with the new key joins the chain's load: the Tasks API's guard meets it too.
  assertions.push(await userToken('alice@contoso.test'));
  await sleep(options.loadAfterSeconds * 1000);
  stop = true;
  await Promise.all(loops);
  const newKidPerInstance = kids.map((set) => [...set].filter((k) => !kidsBefore.has(k)).length);
  for (const instance of instances) {
    await instance.served.stop();
    await rm(instance.served.dataDir, { recursive: true, force: true });
  }
  await database.destroy();
  return {
    instances: instances.length,
    clientCredentialsTokens: counts.clientCredentials,
    exchanges: counts.exchanges,
    validated: counts.validated,
    failedValidations: counts.failed,
    rotateExitCode: rotated ?? -1,
    kidsBefore: kidsBefore.size,
    newKidPerInstance: newKidPerInstance.join('/'),
    userTokensWithNewKeyValidated: counts.newKeyAssertionsValidated,
    ...(samples.length ? { samples: samples.join(' | ') } : {}),
    ok: counts.failed === 0 && rotated === 0 && newKidPerInstance.every((n) => n > 0) && counts.exchanges > 0 && counts.newKeyAssertionsValidated > 0,
  };
}

