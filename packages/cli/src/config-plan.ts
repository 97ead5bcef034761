/**
 * `baton config plan` and `baton config apply`: the configuration file as the declarative source of
 * a store that the admin API also changes. `plan` shows, per tenant and entity, what applying the
 * file would create, update (naming the fields, never their values when they are secrets) or
 * delete; `apply` does it (what `baton serve --config` does at start, plus `--prune`).
 *
 * @example
 * baton config plan --config baton.json --store postgres://… --detailed-exitcode   # 0: nothing to do; 2: changes
 * baton config apply --config baton.json --store postgres://… --prune
 */
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { applyConfigPlan, compileConfig, loadKek, openStore, planConfig, planSummary, readConfigFile, type ConfigPlan, type PlanChange } from '@baton/server';
import type { Command, OptionSpec } from './command.ts';

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

const options: Record<string, OptionSpec> = {
  config: { type: 'string', valueName: 'FILE', description: 'configuration file', env: 'BATON_CONFIG' },
  data: { type: 'string', valueName: 'DIR', description: 'data directory (SQLite file, dev KEK) shared with `baton serve`', default: '.baton', env: 'BATON_DATA' },
  store: { type: 'string', valueName: 'URL', description: 'postgres://… to use PostgreSQL instead of SQLite in DIR', env: 'BATON_STORE' },
  'kek-file': { type: 'string', valueName: 'FILE', description: 'key-encryption key file (BATON_KEK in the environment wins)', env: 'BATON_KEK_FILE' },
  prune: { type: 'boolean', description: 'delete consents and application role assignments the file does not name' },
  json: { type: 'boolean', description: 'print the plan as JSON' },
};

const planOptions: Record<string, OptionSpec> = {
  ...options,
  'detailed-exitcode': { type: 'boolean', description: 'exit 2 when there are changes (0: none), as terraform plan -detailed-exitcode' },
};

const SIGN: Record<PlanChange['action'], string> = { create: '+', update: '~', delete: '-', keep: '=' };
const ENTITY: Record<PlanChange['entity'], string> = { tenant: 'tenant', user: 'user', application: 'application', consent: 'consent', roleAssignment: 'role assignment', policy: 'policy' };

function render(plan: ConfigPlan): string {
  const lines: string[] = [];
  let tenant: string | undefined;
  for (const change of plan.changes) {
    if (change.tenant !== tenant) {
      tenant = change.tenant;
      lines.push(`tenant ${tenant}:`);
    }
    const detail = change.fields ? `: ${change.fields.join(', ')}` : change.note ? `  (${change.note})` : '';
    lines.push(`  ${SIGN[change.action]} ${ENTITY[change.entity]} ${change.name}${detail}`);
  }
  const s = planSummary(plan);
  lines.push(s.create + s.update + s.delete === 0 ? `No changes: the store matches the file (${plan.unchanged} records).` : `Plan: ${s.create} to create, ${s.update} to update, ${s.delete} to delete (${plan.unchanged} unchanged).`);
  return lines.join('\n');
}

async function withPlan(v: Record<string, string | boolean | undefined>, act: (plan: ConfigPlan, apply: () => Promise<void>) => Promise<number>): Promise<number> {
  const path = str(v.config);
  if (path === undefined) throw new Error('--config FILE is required');
  // The file is checked before any store is opened.
  const config = await readConfigFile(path);
  const dataDir = resolve(str(v.data) ?? '.baton');
  if (!str(v.store) && !existsSync(dataDir)) throw new Error(`no data directory at ${dataDir}; pass --data or --store`);
  const store = await openStore({ url: str(v.store), dataDir });
  try {
    const kek = await loadKek({ env: process.env.BATON_KEK, file: str(v['kek-file']), dataDir, dev: true, warn: (m: string) => process.stderr.write(`warning: ${m}\n`) });
    const compiled = await compileConfig(config, { pepper: kek.derive('client-secret-pepper'), kek, store, now: Math.floor(Date.now() / 1000) });
    const plan = await planConfig(store, compiled, { prune: Boolean(v.prune) });
    return await act(plan, () => applyConfigPlan(store, compiled, plan));
  } finally {
    await store.close();
  }
}

export const configPlan: Command = {
  name: 'config plan',
  summary: 'Show what applying a configuration file would change in the store, touching nothing.',
  options: planOptions,
  run: (v) =>
    withPlan(v, async (plan) => {
      process.stdout.write(`${v.json ? JSON.stringify(plan, null, 2) : render(plan)}\n`);
      const s = planSummary(plan);
      return v['detailed-exitcode'] && s.create + s.update + s.delete > 0 ? 2 : 0;
    }),
};

export const configApply: Command = {
  name: 'config apply',
  summary: 'Apply a configuration file to the store (as `serve` does at start; --prune also deletes what the file does not name).',
  options,
  run: (v) =>
    withPlan(v, async (plan, apply) => {
      await apply();
      process.stdout.write(`${v.json ? JSON.stringify(plan, null, 2) : `${render(plan).replace(/^Plan: /m, 'Applied: ')}`}\n`);
      return 0;
    }),
};
