/**
 * `npm run bench [-- <section>...] [--quick] [options]`: Baton against its peers and against the
 * crypto bound, in one run (issue 7). Prints a table of absolute numbers and a table of the
 * targets as ratios (PASS/MISS), writes bench/results/latest.json.
 *
 * Sections, in order: crypto, token, observe, obo, guard, chain, state, instances, cae. A section whose
 * prerequisite is missing says "skipped: <why>" and the run goes on.
 *
 * Options:
 *   --quick               shorter rounds, 10^5 instead of 10^6 grants (for a smoke run)
 *   --rounds N            measured rounds per load (default 3; quick 2)
 *   --seconds S           seconds per round (default 4; quick 2)
 *   --warmup S            warm-up seconds before each load (default 2)
 *   --connections N       concurrent keep-alive connections (default 32)
 *   --profile             profile every server section; --no-profile: never (default: where a target is missed)
 *   --no-pin              do not pin the server and the load generator to separate CPUs
 *   --pg URL              PostgreSQL for the state section (default $BATON_BENCH_PG, else postgres://postgres@127.0.0.1:5432/postgres)
 *   --update-docs         also replace the results block in docs/performance.md
 *   --out FILE            where to write the JSON (default bench/results/latest.json)
 */
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeMachine } from './lib/machine.ts';
import { placeProcesses } from './lib/proc.ts';
import { ceilingTable, evaluateTargets, resultsTable, targetsTable } from './lib/report.ts';
import { formatSummary } from './lib/profile.ts';
import type { BenchContext, Section, SectionResult } from './lib/types.ts';
import { cryptoSection } from './sections/crypto.ts';
import { tokenSection } from './sections/token.ts';
import { observeSection } from './sections/observe.ts';
import { oboSection } from './sections/obo.ts';
import { guardSection } from './sections/guard.ts';
import { chainSection } from './sections/chain.ts';
import { stateSection } from './sections/state.ts';
import { instancesSection } from './sections/instances.ts';
import { caeSection } from './sections/cae.ts';

const SECTIONS: Section[] = [cryptoSection, tokenSection, observeSection, oboSection, guardSection, chainSection, stateSection, instancesSection, caeSection];
const ROOT = fileURLToPath(new URL('../', import.meta.url));

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run bench -- [${SECTIONS.map((s) => s.name).join('|')} ...] [--quick] [--rounds N] [--seconds S] [--warmup S] [--connections N] [--profile|--no-profile] [--no-pin] [--pg URL] [--update-docs] [--out FILE]\n`);
  process.exit(2);
}

function positiveNumber(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) usage(`--${name} must be a positive number`);
  return n;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        profile: { type: 'boolean' },
        'no-profile': { type: 'boolean', default: false },
        'no-pin': { type: 'boolean', default: false },
        pg: { type: 'string' },
        'update-docs': { type: 'boolean', default: false },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    usage((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) usage('Baton benchmarks (issue 7).');
  const unknown = positionals.filter((p) => !SECTIONS.some((s) => s.name === p));
  if (unknown.length) usage(`unknown section(s): ${unknown.join(', ')}`);
  const selected = positionals.length ? SECTIONS.filter((s) => positionals.includes(s.name)) : SECTIONS;

  const quick = values.quick;
  const machine = describeMachine(); // before pinning: it reads the core count
  const placement = placeProcesses(!values['no-pin']);
  const resultsDir = join(ROOT, 'bench', 'results');
  await mkdir(resultsDir, { recursive: true });
  const tmp = await mkdtemp(join(tmpdir(), 'baton-bench-run-'));
  const ctx: BenchContext = {
    quick,
    warmupSeconds: positiveNumber(values.warmup, 'warmup', 2),
    rounds: Math.round(positiveNumber(values.rounds, 'rounds', quick ? 2 : 3)),
    roundSeconds: positiveNumber(values.seconds, 'seconds', quick ? 2 : 4),
    connections: Math.round(positiveNumber(values.connections, 'connections', 32)),
    placement,
    serviceCores: placement.pinned ? 1 : machine.cores,
    tmpDir: tmp,
    resultsDir,
    profile: values.profile ? 'always' : values['no-profile'] ? 'never' : 'auto',
    pgUrl: values.pg ?? process.env.BATON_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    shared: {},
    log: (message) => process.stderr.write(`· ${message}\n`),
  };
  process.stderr.write(
    `Baton bench — ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.commit ?? 'no git'}${machine.dirty ? ' (uncommitted changes)' : ''}\n` +
      `${placement.why}; ${ctx.connections} connections, warm-up ${ctx.warmupSeconds} s, ${ctx.rounds} × ${ctx.roundSeconds} s rounds (medians)${quick ? ', QUICK' : ''}\n`,
  );

  const started = performance.now();
  const results: SectionResult[] = [];
  const byName = new Map<string, SectionResult>();
  for (const section of selected) {
    const t0 = performance.now();
    process.stderr.write(`\n== ${section.title}\n`);
    let result: SectionResult;
    try {
      result = await section.run(ctx);
    } catch (error) {
      result = { name: section.name, status: 'failed', reason: (error as Error).message.split('\n')[0] ?? 'error', rows: [], data: { error: (error as Error).stack }, profiles: [] };
      process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    }
    result.seconds = Math.round((performance.now() - t0) / 100) / 10;
    if (result.status !== 'ran') process.stderr.write(`${section.name} ${result.status}: ${result.reason}\n`);
    results.push(result);
    byName.set(section.name, result);
  }

  const targets = evaluateTargets(ctx.shared, ctx, byName);
  const results_md = resultsTable(results);
  const targets_md = `${targetsTable(targets)}\n\n${ceilingTable(ctx.shared, ctx)}`;
  const header =
    `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, ${machine.os}, Node ${machine.node}, ` +
    `commit ${machine.commit ?? '?'}${machine.dirty ? ' + uncommitted changes' : ''}, ${machine.date}\n` +
    `HTTPS with keep-alive, ${ctx.connections} connections, warm-up ${ctx.warmupSeconds} s then ${ctx.rounds} × ${ctx.roundSeconds} s rounds, medians; ${placement.why}` +
    `${quick ? '; QUICK run' : ''}`;
  let out = `\n${header}\n\n${results_md}\n\n${targets_md}\n`;
  for (const section of results) {
    for (const p of section.profiles) {
      out += `\n${formatSummary(`${p.title}${p.file ? ` (${p.file.replace(ROOT, '')})` : ''}`, { ...p.summary, top: p.summary.top.slice(0, 20) })}\n`;
    }
  }
  const totalSeconds = Math.round((performance.now() - started) / 1000);
  out += `\nTotal ${totalSeconds} s.\n`;
  process.stdout.write(out);

  const outFile = values.out ?? join(resultsDir, 'latest.json');
  const json = {
    machine,
    settings: {
      quick,
      connections: ctx.connections,
      warmupSeconds: ctx.warmupSeconds,
      rounds: ctx.rounds,
      roundSeconds: ctx.roundSeconds,
      placement,
      serviceCores: ctx.serviceCores,
      sections: selected.map((s) => s.name),
      transport: 'HTTPS (TLS 1.3, P-256 certificate), HTTP/1.1 keep-alive',
    },
    seconds: totalSeconds,
    targets,
    sections: Object.fromEntries(results.map((r) => [r.name, r])),
    tables: { header, results: results_md, targets: targets_md },
  };
  await writeFile(outFile, `${JSON.stringify(json, null, 2)}\n`);
  process.stderr.write(`wrote ${outFile.replace(ROOT, '')}\n`);

  if (values['update-docs']) await updateDocs(header, results_md, targets_md);

  const failed = results.filter((r) => r.status === 'failed');
  if (failed.length) {
    process.stderr.write(`failed: ${failed.map((f) => f.name).join(', ')} — server logs kept in ${tmp}\n`);
    return 1;
  }
  await rm(tmp, { recursive: true, force: true });
  return 0;
}

const DOCS_START = '<!-- bench:results:start -->';
const DOCS_END = '<!-- bench:results:end -->';

/** Replaces the block between the markers in docs/performance.md with this run's tables. */
async function updateDocs(header: string, results: string, targets: string): Promise<void> {
  const path = join(ROOT, 'docs', 'performance.md');
  const text = await readFile(path, 'utf8');
  const start = text.indexOf(DOCS_START);
  const end = text.indexOf(DOCS_END);
  if (start < 0 || end < start) {
    process.stderr.write(`docs/performance.md has no ${DOCS_START} … ${DOCS_END} block; not updated\n`);
    return;
  }
  const block = `${DOCS_START}\n${header.replace('\n', '  \n')}\n\n${results}\n\n${targets}\n${DOCS_END}`;
  await writeFile(path, text.slice(0, start) + block + text.slice(end + DOCS_END.length));
  process.stderr.write('updated docs/performance.md\n');
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
