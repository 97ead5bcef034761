/**
 * The OpenTelemetry SDK as a traced deployment runs it, for the bench's token service: a tracer
 * provider with the default sampler (every request the caller sampled, and every new trace) or a
 * ratio of new traces, the
 * AsyncLocalStorage context manager, the W3C propagator, and a BatchSpanProcessor — the processor
 * an OTLP deployment uses — in front of an exporter that counts the spans it is handed and keeps
 * none, so the figure is Baton's spans and the SDK's batching, not a collector's network.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';

/** Counts the spans each batch brings, drops them. */
class CountingExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {}
  async forceFlush(): Promise<void> {}
}

export interface BenchTracing {
  /** Spans exported so far (flushes the batch first). */
  exported(): Promise<number>;
  shutdown(): Promise<void>;
}

/**
 * Installs the SDK globally in this process (before the server starts). `ratio`: new traces are
 * sampled at this ratio (`parentbased_traceidratio`, what a busy deployment sets); default: all.
 */
export function installTracing(ratio?: number): BenchTracing {
  const exporter = new CountingExporter();
  const sampler = ratio === undefined ? undefined : new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)], ...(sampler ? { sampler } : {}) });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    async exported() {
      await provider.forceFlush();
      return exporter.spans;
    },
    shutdown: () => provider.shutdown(),
  };
}
