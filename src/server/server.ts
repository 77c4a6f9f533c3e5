import type * as http2 from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_stream_v1_stream, StreamService } from "../../gen/stream/v1/stream_pb.js";
import type { Config } from "../config/config.js";
import { shutdownError } from "../core/errors.js";
import { GreetingStreams, type StreamObserver } from "../core/stream-service.js";
import { contextValues, createStreamRoutes } from "../entries/connect/stream-routes.js";
import { createHttpStreamRoute } from "../entries/http-stream/http-stream.js";
import { peerOf } from "../entries/kit/call.js";
import { createFastPath } from "../entries/lean-grpc/fast-path.js";
import { createStaticPageRoutes } from "../entries/static-page/static-page.js";
import { PlainRoutes } from "../http/plain-routes.js";
import { guardRequests } from "../http/request-guard.js";
import { createHealthRoutes, createReadyzHandler, HealthStatus, handleHealthz } from "../ops/health.js";
import type { Logger } from "../ops/log.js";
import { Metrics, type MetricsGroup } from "../ops/metrics.js";
import type { EnvTracer } from "../ops/otel-env.js";
import { createReflectionRoutes, DescriptorIndex } from "../ops/reflection.js";
import { createStreamLog } from "../ops/stream-log.js";
import { createTracingObserver, wantsLegacyRpcAttributes } from "../ops/tracing.js";
import { closeAgedHttp1, connectionAgeError } from "./connection-age.js";
import { withCors } from "./cors.js";
import { type Listener, listen } from "./listen.js";
import { shutdown } from "./shutdown.js";

// Builds the whole server without binding it, so tests start it on port 0 and
// only main.ts listens on the configured port.

export interface Server {
  readonly streams: GreetingStreams;
  /** What grpc.health.v1.Health, /healthz and /readyz report. */
  readonly health: HealthStatus;
  /** Binds config.host:config.port and serves until shutdown(). */
  listen(): Promise<Listener>;
  /** Graceful shutdown; resolves true when nothing had to be cut. */
  shutdown(): Promise<boolean>;
}

export interface ServerOptions {
  /** Where stream spans go (tracerFromEnv()). Default none: no span is made, and tracing costs nothing. */
  tracing?: EnvTracer | undefined;
  /** The process group this server is a worker of (--workers): GET /metrics then shows the whole group. Default none. */
  metricsGroup?: MetricsGroup | undefined;
}

export function createServer(config: Config, logger: Logger, options: ServerOptions = {}): Server {
  const { tracing } = options;
  // Per stream, never per message: messagesSent is read only when /metrics is scraped.
  const metrics: Metrics | undefined = config.metrics
    ? new Metrics({ messagesSent: (): number => streams.messagesSent, group: options.metricsGroup })
    : undefined;
  const observers: StreamObserver[] = [];
  // First: it gives the call the trace and span ids that the log lines carry.
  if (tracing) {
    observers.push(createTracingObserver({ tracer: tracing.tracer, legacyAttributes: wantsLegacyRpcAttributes() }));
  }
  observers.push(createStreamLog(logger));
  if (metrics) observers.push(metrics);
  const streams = new GreetingStreams({
    defaultIntervalMs: config.defaultIntervalMs,
    maxStreams: config.maxStreams,
    observers,
  });
  const health = new HealthStatus([StreamService.typeName]);
  // Aborted when shutdown starts, so reflection streams end then instead of holding the grace period.
  const draining = new AbortController();
  const reflection = new DescriptorIndex([
    file_stream_v1_stream,
    file_grpc_health_v1_health,
    file_grpc_reflection_v1_reflection,
    file_grpc_reflection_v1alpha_reflection,
  ]);
  const plain = new PlainRoutes();
  // Probes and scrapers read; nothing else has a meaning here (TRACE least of all).
  const readOnly = ["GET", "HEAD"];
  plain.add("/healthz", handleHealthz, readOnly);
  plain.add("/readyz", createReadyzHandler(health), readOnly);
  if (metrics) plain.add("/metrics", metrics.handle, readOnly);
  plain.add("/stream", createHttpStreamRoute({ streams, heartbeatMs: config.heartbeatMs }));
  for (const [path, route] of createStaticPageRoutes()) plain.add(path, route);
  const handler = guardRequests(
    withCors(
      connectNodeAdapter({
        routes: (router) => {
          createStreamRoutes(streams)(router);
          createHealthRoutes(health)(router);
          createReflectionRoutes(reflection, { stopping: draining.signal })(router);
        },
        contextValues,
        readMaxBytes: config.maxRequestBytes,
        fallback: plain.handle,
      }),
      { allowedOrigins: config.corsOrigins },
    ),
    (e) => logger.warn("request handler failed", { error: e instanceof Error ? e.message : String(e) }),
  );
  let listener: Listener | undefined;
  let closing: Promise<boolean> | undefined;
  const onDraining = () => {
    health.drain();
    draining.abort(shutdownError);
  };
  return {
    streams,
    health,
    async listen() {
      const fastPath = config.fastPath
        ? createFastPath({ streams, readMaxBytes: config.maxRequestBytes, logger })
        : undefined;
      // A connection past its --max-connection-age grace: its streams end with UNAVAILABLE, and resuming clients go on.
      const endStreams = (session: http2.ServerHttp2Session) => {
        const peer = peerOf(session.socket);
        streams.stopWhere((call) => call.peer === peer, connectionAgeError);
      };
      listener = await listen(config, closeAgedHttp1(handler, config.maxConnectionAgeMs), logger, fastPath, endStreams);
      return listener;
    },
    shutdown() {
      if (listener === undefined) return Promise.resolve(true);
      closing ??= shutdown({
        listener,
        streams,
        logger,
        graceMs: config.shutdownGraceMs,
        onDraining,
        ...(tracing ? { flush: (timeoutMs: number) => tracing.shutdown(timeoutMs) } : {}),
      });
      return closing;
    },
  };
}
