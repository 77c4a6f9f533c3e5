import { type DiagLogger, DiagLogLevel, diag, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { Logger } from "./log.js";

// A tracer configured the way OpenTelemetry documents it, from the standard
// OTEL_* environment variables, for the server and the Node client alike.
// Nothing is built unless an OTLP endpoint is set: with no endpoint there is
// no provider, no exporter and no timer, and tracing costs nothing.
//
// Who reads what: the OTLP exporter reads the endpoint, headers, timeout,
// compression and certificates (OTEL_EXPORTER_OTLP_[TRACES_]*); the SDK reads
// OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_* and the span limits; this file reads
// the endpoint's presence, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER and the
// protocol (which only @opentelemetry/sdk-node would read otherwise), and
// merges OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES into the resource
// (the provider alone would not).

export class TracingConfigError extends Error {}

export interface TracerFromEnvOptions {
  /** service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise. */
  serviceName: string;
  serviceVersion: string;
  /** Export failures and the SDK's own complaints go here, at warn. */
  logger: Logger;
  /** Default process.env. The SDK and the exporter read process.env whatever this is. */
  env?: NodeJS.ProcessEnv;
}

export interface EnvTracer {
  readonly tracer: Tracer;
  /** The protocol spans leave with: "http/protobuf" or "http/json". */
  readonly protocol: string;
  /** Exports what is pending and stops; resolves within `timeoutMs` whatever the collector does. */
  shutdown(timeoutMs: number): Promise<void>;
}

const protocols = ["http/protobuf", "http/json"];

/**
 * A tracer exporting over OTLP/HTTP, or undefined when the environment asks
 * for no tracing: no OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_SDK_DISABLED=true
 * or OTEL_TRACES_EXPORTER=none. Throws TracingConfigError on a value it
 * cannot honour (a gRPC protocol, an exporter other than otlp).
 */
export function tracerFromEnv(options: TracerFromEnvOptions): EnvTracer | undefined {
  const env = options.env ?? process.env;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "otlp").split(",").map((e) => e.trim());
  if (exporters.includes("none")) return undefined;
  const unknown = exporters.filter((e) => e !== "otlp" && e !== "");
  if (unknown.length > 0) {
    throw new TracingConfigError(`OTEL_TRACES_EXPORTER: only otlp (or none) is supported, got ${unknown.join(",")}`);
  }
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ||
    env.OTEL_EXPORTER_OTLP_PROTOCOL ||
    "http/protobuf"
  ).trim();
  if (!protocols.includes(protocol)) {
    throw new TracingConfigError(
      `OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf or http/json (OTLP over HTTP, port 4318), got ${JSON.stringify(protocol)}`,
    );
  }
  // Before the provider, which reports a bad OTEL_TRACES_SAMPLER through diag.
  diag.setLogger(diagToLogger(options.logger), DiagLogLevel.WARN);
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: options.serviceName,
        [ATTR_SERVICE_VERSION]: options.serviceVersion,
      }),
    )
    // Last, so that the operator's OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
    .merge(detectResources({ detectors: [envDetector] }));
  const exporter = protocol === "http/json" ? new JsonExporter() : new ProtobufExporter();
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  return {
    tracer: provider.getTracer(options.serviceName, options.serviceVersion),
    protocol,
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          options.logger.warn("tracing: spans not exported before the deadline", { timeout_ms: timeoutMs });
          resolve();
        }, timeoutMs);
      });
      const done = provider.shutdown().catch((e: unknown) => {
        options.logger.warn("tracing: shutdown failed", { error: e instanceof Error ? e.message : String(e) });
      });
      await Promise.race([done, late]);
      clearTimeout(timer);
    },
  };
}

/** The SDK's diagnostics (export failures, bad variables) as warnings: tracing never stops the service. */
function diagToLogger(logger: Logger): DiagLogger {
  const warn = (message: string, ...args: unknown[]) => {
    const detail = args.map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : safeJson(a)));
    logger.warn(`opentelemetry: ${message}`, detail.length > 0 ? { detail: detail.join(" ") } : undefined);
  };
  const ignore = () => {};
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
