/**
 * The control channel of a bench server process: its stdin. One command per line, one JSON answer
 * per command on stdout; the end of stdin (the bench went away) stops the server.
 *
 *   profile start            start V8's sampling CPU profiler (the one `--cpu-prof` uses) in this
 *                            process, so the profile covers the load window only — not start-up,
 *                            configuration, password hashing or the warm-up
 *   profile stop <path>      stop it and write a `.cpuprofile` (Chrome DevTools format) to <path>
 *                            → {"profile": "<path>"}
 *   <verb> <argument>        a command the server registered (bench/servers/baton.ts: `inject`)
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { createInterface } from 'node:readline';

/** Sampling interval in microseconds (V8's default is 1000): finer, for sub-millisecond requests. */
const SAMPLING_INTERVAL_US = 200;

/** Extra commands a server offers: `<verb> <argument...>` → the handler's answer. */
export type ControlHandlers = Record<string, (argument: string) => Promise<Record<string, unknown>>>;

export function installControl(stop: () => void, handlers: ControlHandlers = {}): void {
  let session: Session | undefined;
  const reply = (message: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(message)}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [verb, action, ...rest] = line.trim().split(' ');
    void (async () => {
      try {
        if (verb === 'profile' && action === 'start') {
          session = new Session();
          session.connect();
          await session.post('Profiler.enable');
          await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
          await session.post('Profiler.start');
          reply({ profiling: true });
        } else if (verb === 'profile' && action === 'stop') {
          if (!session) throw new Error('the profiler is not running');
          const { profile } = await session.post('Profiler.stop');
          session.disconnect();
          session = undefined;
          const path = rest.join(' ');
          await writeFile(path, JSON.stringify(profile));
          reply({ profile: path });
        } else if (verb !== undefined && Object.hasOwn(handlers, verb)) {
          reply(await (handlers[verb] as ControlHandlers[string])([action, ...rest].join(' ')));
        } else {
          reply({ error: `unknown command: ${line.slice(0, 80)}` });
        }
      } catch (error) {
        reply({ error: (error as Error).message });
      }
    })();
  });
  lines.on('close', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
