/**
 * `GET /readyz`: whether this instance can serve requests now, for a load balancer or an
 * orchestrator's readiness probe. `/healthz` says the process is up; `/readyz` also asks the store,
 * which every grant needs: while it does not answer (PostgreSQL down, a network partition), the
 * instance answers 503 and traffic goes to instances that can serve it.
 */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

/** How long the store has to answer before the instance counts as not ready. */
export const READINESS_TIMEOUT_MS = 2000;

export function readinessRoute(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/readyz', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), READINESS_TIMEOUT_MS);
    });
    try {
      await Promise.race([ctx.store.listTenants(), timeout]);
      return { status: 'ready' };
    } catch (error) {
      // The reason goes to the operator's log; the probe learns only that the store does not answer.
      ctx.log.warn({ err: (error as Error).message }, 'not ready: the store does not answer');
      return reply.code(503).header('retry-after', '5').send({ status: 'unavailable', reason: 'the store does not answer' });
    } finally {
      clearTimeout(timer);
    }
  });
}
