/**
 * `baton dev` loads the private demo chain by dynamic import (the published CLI does not depend on
 * it). Its shape is checked here at type level (the repository's tsc), and its absence gives a
 * message that says where the demo lives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as demoChain from '@baton/example-chain';
import { loadDemoChain, type DemoChain } from '../src/dev.ts';

test('the demo chain has the shape baton dev uses', async () => {
  const typed: DemoChain<ReturnType<typeof demoChain.readDemoConfig>> = demoChain;
  const loaded = await loadDemoChain();
  assert.equal(loaded.startChain, typed.startChain);
});

test('without the demo chain, baton dev says where it lives', async () => {
  await assert.rejects(loadDemoChain('@baton/no-such-demo'), {
    message: "'baton dev' runs the demo chain, which lives in Baton's repository (examples/chain) and is not part of @baton/cli. Clone the repository and run 'npm start' there; to run the token service for your own APIs, use 'baton serve'.",
  });
});
