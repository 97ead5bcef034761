/**
 * Where the time goes: reads a V8 CPU profile (`node --cpu-prof`, or `Profiler.stop()` from
 * `node:inspector`) and aggregates self time by function (name + file + line) and by "area"
 * (a package in node_modules, a workspace package, Node's internals, GC, native code).
 *
 * Self time comes from the sample timeline (`samples` + `timeDeltas`), not from `hitCount` times
 * an assumed interval, so a profile taken under load is weighted correctly. Inclusive time counts a
 * function once per stack (recursion is not double counted).
 *
 * CLI: node bench/lib/profile.ts <file.cpuprofile> [--top N]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileEntry {
  name: string;
  where: string;
  area: string;
  selfMs: number;
  selfPct: number;
  totalPct: number;
  /** For native and Node-internal frames: the nearest callers in our code or a package, by share of this entry's self time. */
  callers?: { name: string; where: string; pct: number }[];
}

export interface ProfileSummary {
  /** Sampled milliseconds (idle included). */
  sampledMs: number;
  /** Share of samples in which the thread was busy (not `(idle)`). */
  busyPct: number;
  /** Top functions by self time; percentages are of busy time. */
  top: ProfileEntry[];
  /** Self time by area, percentages of busy time. */
  areas: { area: string; selfPct: number }[];
  /** Inclusive time of functions worth naming (hooks, serialisation, crypto), % of busy time. */
  inclusive: { name: string; where: string; totalPct: number }[];
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function shortUrl(url: string): string {
  if (url === '') return '';
  let path = url;
  if (url.startsWith('file://')) {
    try {
      path = relative(ROOT, fileURLToPath(url));
    } catch {
      path = url;
    }
  }
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) path = path.slice(nm + 'node_modules/'.length);
  return path;
}

/** The area a frame belongs to: `fastify`, `pino`, `@baton/core`, `node:internal`, `(gc)`, ... */
export function areaOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(program)') return '(program: native, not attributed)';
    if (functionName === '(root)') return '(root)';
    return '(native builtins)';
  }
  if (url.startsWith('node:')) {
    const m = /^node:(internal\/)?([a-z_]+)/.exec(url);
    return m ? `node:${m[2]}` : url;
  }
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const pkg = /\/packages\/([a-z-]+)\/src\//.exec(url);
  if (pkg) return `@baton/${pkg[1]}`;
  if (url.includes('/bench/')) return 'bench';
  return shortUrl(url);
}

/** Functions whose inclusive time tells a story in a token-service profile. */
const INTERESTING =
  /^(sign|verify|verifyJwsSignature|createSigner|JSON\.stringify|stringify|parse|parseForm|runExchange|planExchange|readRecords|decideExchange|issueDelegatedToken|buildDelegatedClaims|buildAppOnlyClaims|authenticateClient|verifyClientSecret|checkOwnSignature|record|write|onSendHook|hookRunner|onSendEnd|handleRequest|preHandlerCallback|wrapThenable|serialize|getUserById|listConsents|token|processTicksAndRejections|emit|onStreamRead|clientCredentialsHandler|tokenHandler|jwtVerify|compactVerify|flattenedVerify|createHash|update|digest)$/;

export function summarise(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  // Self time per node from the sample timeline (each delta belongs to the sample it precedes).
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    for (let i = 0; i < samples.length; i++) {
      const next = deltas[i + 1] ?? 0;
      const id = samples[i] as number;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, next));
    }
  } else {
    const interval = (profile.endTime - profile.startTime) / Math.max(1, profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0));
    for (const node of profile.nodes) selfUs.set(node.id, (node.hitCount ?? 0) * interval);
  }

  const keyOf = (node: ProfileNode) => `${node.callFrame.functionName || '(anonymous)'}|${node.callFrame.url}|${node.callFrame.lineNumber}`;
  let totalUs = 0;
  let idleUs = 0;
  const selfByKey = new Map<string, { frame: CallFrame; us: number }>();
  const inclusiveByKey = new Map<string, number>();
  const areas = new Map<string, number>();
  /** Self time of a key, split by the first ancestor frame outside Node's internals and natives. */
  const callersByKey = new Map<string, Map<string, number>>();
  const isOpaque = (frame: CallFrame) => frame.url === '' || frame.url.startsWith('node:');
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    totalUs += us;
    if (node.callFrame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const key = keyOf(node);
    const entry = selfByKey.get(key) ?? { frame: node.callFrame, us: 0 };
    entry.us += us;
    selfByKey.set(key, entry);
    const area = areaOf(node.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + us);
    if (isOpaque(node.callFrame)) {
      let caller: ProfileNode | undefined;
      for (let id = parent.get(node.id); id !== undefined; id = parent.get(id)) {
        const candidate = byId.get(id) as ProfileNode;
        if (!isOpaque(candidate.callFrame)) {
          caller = candidate;
          break;
        }
      }
      const callers = callersByKey.get(key) ?? new Map<string, number>();
      const callerKey = caller ? keyOf(caller) : '(none)||0';
      callers.set(callerKey, (callers.get(callerKey) ?? 0) + us);
      callersByKey.set(key, callers);
    }
    // Inclusive: this sample time counts once for every distinct function on the stack.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const ancestor = byId.get(id) as ProfileNode;
      const k = keyOf(ancestor);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusiveByKey.set(k, (inclusiveByKey.get(k) ?? 0) + us);
    }
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const pct = (us: number) => Math.round((us / busyUs) * 1000) / 10;

  const topEntries = [...selfByKey.entries()]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, top)
    .map(([key, { frame, us }]) => ({
      name: frame.functionName || '(anonymous)',
      where: frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '',
      area: areaOf(frame),
      selfMs: Math.round(us / 100) / 10,
      selfPct: pct(us),
      totalPct: pct(inclusiveByKey.get(key) ?? us),
      ...(callersByKey.has(key)
        ? {
            callers: [...(callersByKey.get(key) as Map<string, number>).entries()]
              .sort((a, b) => b[1] - a[1])
              .slice(0, 3)
              .map(([k, cus]) => {
                const [name, url, line] = k.split('|') as [string, string, string];
                return { name, where: url ? `${shortUrl(url)}:${Number(line) + 1}` : '', pct: Math.round((cus / us) * 100) };
              }),
          }
        : {}),
    }));

  const inclusive = [...inclusiveByKey.entries()]
    .map(([key, us]) => {
      const [name, url, line] = key.split('|') as [string, string, string];
      return { name, where: url ? `${shortUrl(url)}:${Number(line) + 1}` : '', totalPct: pct(us) };
    })
    .filter((e) => INTERESTING.test(e.name) && e.totalPct >= 1)
    .sort((a, b) => b.totalPct - a.totalPct)
    .slice(0, 30);

  return {
    sampledMs: Math.round(totalUs / 1000),
    busyPct: Math.round(((totalUs - idleUs) / Math.max(1, totalUs)) * 1000) / 10,
    top: topEntries,
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([area, us]) => ({ area, selfPct: pct(us) })),
    inclusive,
  };
}

export function formatSummary(title: string, summary: ProfileSummary): string {
  const lines = [`Profile: ${title} — ${summary.sampledMs} ms sampled, busy ${summary.busyPct}%`, '', 'self time by area (% of busy):'];
  for (const a of summary.areas) lines.push(`  ${String(a.selfPct).padStart(5)}%  ${a.area}`);
  lines.push('', 'top functions by self time (% of busy; total = inclusive):');
  for (const e of summary.top) {
    lines.push(`  ${String(e.selfPct).padStart(5)}%  total ${String(e.totalPct).padStart(5)}%  ${e.name}  ${e.where}`);
    if (e.callers?.length) lines.push(`                        ← ${e.callers.map((c) => `${c.name} ${c.where} (${c.pct}%)`).join(', ')}`);
  }
  if (summary.inclusive.length) {
    lines.push('', 'inclusive time of selected functions (% of busy):');
    for (const e of summary.inclusive) lines.push(`  ${String(e.totalPct).padStart(5)}%  ${e.name}  ${e.where}`);
  }
  return lines.join('\n');
}

export function summariseFile(path: string, top = 25): ProfileSummary {
  return summarise(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile, top);
}

if (import.meta.main) {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/lib/profile.ts <file.cpuprofile> [--top N]\n');
    process.exit(2);
  }
  const topIndex = rest.indexOf('--top');
  const topN = topIndex >= 0 ? Number(rest[topIndex + 1]) : 25;
  process.stdout.write(`${formatSummary(file, summariseFile(file, topN))}\n`);
}
