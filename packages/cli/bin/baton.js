#!/usr/bin/env node
// The `baton` command. Installed from npm it runs the built JavaScript (dist/). In Baton's own
// repository, where src/ exists, it runs the TypeScript sources directly, and makes every @baton/*
// import resolve to sources too (the `baton-source` export condition), so `npx baton …` needs no
// build there. In-process (no child process), so a signal sent to this pid reaches `baton serve`.
import { existsSync } from 'node:fs';
import module from 'node:module';

const source = new URL('../src/bin.ts', import.meta.url);
if (existsSync(source)) {
  if (!process.execArgv.includes('--conditions=baton-source') && !(process.env.NODE_OPTIONS ?? '').includes('--conditions=baton-source')) {
    module.registerHooks({
      resolve(specifier, context, nextResolve) {
        return nextResolve(specifier, { ...context, conditions: [...context.conditions, 'baton-source'] });
      },
    });
  }
  await import(source.href);
} else {
  await import('../dist/bin.js');
}
