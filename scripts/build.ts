/**
 * Builds public packages into their dist/: JavaScript + .d.ts + source maps (tsc -b, which builds
 * the packages a package depends on first, through project references), plus the files the code
 * reads at run time that are not TypeScript (the sign-in pages' stylesheet and script), copied
 * beside the JavaScript that reads them.
 *
 * What each package's `prepack` runs (so `npm pack` / `npm publish` always ship a fresh build);
 * `node scripts/build.ts` from the root builds every public package. The repository itself never
 * needs dist/: it runs the TypeScript sources (the `baton-source` export condition).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** The public packages, in dependency order. */
export const PUBLIC_PACKAGES = ['core', 'resource', 'server', 'cli'] as const;

function tsc(...args: string[]): void {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), ...args], { stdio: 'inherit', cwd: ROOT });
}

/** Copies every file under src/ that is not TypeScript into dist/, at the same relative path. */
function copyAssets(pkg: string): void {
  const src = join(ROOT, 'packages', pkg, 'src');
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (!entry.name.endsWith('.ts')) {
        const target = join(ROOT, 'packages', pkg, 'dist', relative(src, path));
        // x.js beside x.ts would overwrite the compiled module with the asset.
        if (existsSync(`${path.replace(/\.js$/, '')}.ts`)) throw new Error(`${relative(ROOT, path)} has the name tsc emits for its .ts sibling: rename the asset`);
        cpSync(path, target);
      }
    }
  };
  walk(src);
}

export function build(packages: readonly string[], options: { clean?: boolean } = {}): void {
  if (options.clean) for (const pkg of PUBLIC_PACKAGES) rmSync(join(ROOT, 'packages', pkg, 'dist'), { recursive: true, force: true });
  tsc('-b', ...packages.map((pkg) => `packages/${pkg}/tsconfig.build.json`));
  // tsc -b built the dependencies too: each built package gets its assets.
  for (const pkg of PUBLIC_PACKAGES) if (existsSync(join(ROOT, 'packages', pkg, 'dist'))) copyAssets(pkg);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const here = basename(process.cwd());
  const arg = process.argv[2];
  const packages = arg === undefined && (PUBLIC_PACKAGES as readonly string[]).includes(here) && basename(dirname(process.cwd())) === 'packages' ? [here] : [...PUBLIC_PACKAGES];
  build(packages, { clean: process.argv.includes('--clean') });
}
