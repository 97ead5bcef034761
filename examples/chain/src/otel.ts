/**
 * The demo's OpenTelemetry SDK. Baton's libraries depend on `@opentelemetry/api` only: an application
 * installs the SDK, as the demo does here for `baton dev` (the token service, the three APIs and
 * Tasks Web share its one process, so one provider sees every hop of a request).
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set: spans go over
 *   OTLP/HTTP (JSON/protobuf per the exporter's own `OTEL_EXPORTER_OTLP_*` settings), in batches.
 *   `OTEL_SERVICE_NAME` names the service (default `baton-dev`).
 * - Unset: nothing is installed, and every span in the libraries is the API's no-op.
 * - `exporter` (tests): that exporter, each span exported as it ends.
 */
import { NodeTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';

export interface Tracing {
  /** Exports what is left and stops. */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  env?: NodeJS.ProcessEnv | undefined;
  /** Export to this exporter instead (tests: the SDK's `InMemorySpanExporter`). */
  exporter?: SpanExporter | undefined;
}

/** Installs the SDK (provider, AsyncLocalStorage context, W3C propagator) when asked to; `undefined` otherwise. */
export function startTracing(options: TracingOptions = {}): Tracing | undefined {
  const env = options.env ?? process.env;
  const otlp = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (options.exporter === undefined && !otlp) return undefined;
  const processor = options.exporter !== undefined ? new SimpleSpanProcessor(options.exporter) : new BatchSpanProcessor(new OTLPTraceExporter());
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || 'baton-dev' }),
    spanProcessors: [processor],
  });
  // The default registration: AsyncLocalStorage context manager, W3C Trace Context + Baggage propagators.
  provider.register();
  return { shutdown: () => provider.shutdown() };
}
