/**
 * A fresh `npm install` prints no install-scripts warning: the one install script the repository
 * needs (the `node` devDependency's, which fetches the pinned Node.js binary) is allowed in the
 * project's own configuration (`allowScripts` in package.json, npm 11).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('npm install allows the install scripts the project needs, so it warns about none', async () => {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { allowScripts?: Record<string, boolean> };
  assert.deepEqual(manifest.allowScripts, { node: true });
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
  const { stdout, stderr } = await promisify(execFile)('npm', ['install', '--dry-run', '--no-audit', '--no-fund'], { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024 });
  assert.doesNotMatch(stdout + stderr, /install-scripts|allowScripts/);
});
