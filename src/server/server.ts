import type * as http from "node:http";
import type * as http2 from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_stream_v1_stream, StreamService } from "../../gen/stream/v1/stream_pb.js";
import type { Config } from "../config/config.js";
import { shutdownError } from "../core/errors.js";
import { GreetingStreams, type StreamObserver } from "../core/stream-service.js";
import { createAuthInterceptor } from "../entries/connect/auth-interceptor.js";
import { contextValues, createStreamRoutes } from "../entries/connect/stream-routes.js";
import { createHttpStreamRoute } from "../entries/http-stream/http-stream.js";
import { BearerTokens, requireBearer } from "../entries/kit/auth.js";
import { peerOf } from "../entries/kit/call.js";
import { createLeanRpc } from "../entries/lean-rpc/lean-rpc.js";
import { createStaticPageRoutes } from "../entries/static-page/static-page.js";
import { createCorsPolicy, withCors } from "../http/cors.js";
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
import { type Listener, listen } from "./listen.js";
import { shutdown } from "./shutdown.js";
import { readTokenFile } from "./token-file.js";

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
  /**
   * Reads --auth-token-file again (on SIGHUP): true when the new tokens took
   * over; on a failure the old ones stay and a warning is logged. False when
   * there is no token file.
   */
  reloadTokens(): boolean;
}

export interface ServerOptions {
  /** Where stream spans go (tracerFromEnv()). Default none: no span is made, and tracing costs nothing. */
  tracing?: EnvTracer | undefined;
  /** The process group this server is a worker of (--workers): GET /metrics then shows the whole group. Default none. */
  metricsGroup?: MetricsGroup | undefined;
}

/** Throws a ConfigError (before anything listens) when --auth-token-file cannot be read or holds no token. */
export function createServer(config: Config, logger: Logger, options: ServerOptions = {}): Server {
  const { tracing } = options;
  const tokenFile = config.authTokenFile;
  const tokens = tokenFile === undefined ? undefined : new BearerTokens(readTokenFile(tokenFile));
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
    maxDurationMs: config.maxStreamDurationMs,
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
  if (metrics) {
    plain.add(
      "/metrics",
      tokens && config.authMetrics ? requireBearer(tokens, metrics.handle) : metrics.handle,
      readOnly,
    );
  }
  plain.add("/stream", createHttpStreamRoute({ streams, heartbeatMs: config.heartbeatMs, tokens }));
  for (const [path, route] of createStaticPageRoutes()) plain.add(path, route);
  const toConnect = withCors(
    connectNodeAdapter({
      routes: (router) => {
        createStreamRoutes(streams)(router);
        createHealthRoutes(health)(router);
        createReflectionRoutes(reflection, { stopping: draining.signal })(router);
      },
      contextValues,
      // Health stays open: probes and load balancers call it without a token.
      interceptors: tokens ? [createAuthInterceptor({ tokens, streams, openServices: [Health.typeName] })] : [],
      readMaxBytes: config.maxRequestBytes,
      fallback: plain.handle,
    }),
    { allowedOrigins: config.corsOrigins },
  );
  // The lean road takes Stream over every RPC protocol before connect-node sees it (--fast-path off: never).
  const lean = config.fastPath
    ? createLeanRpc({
        streams,
        readMaxBytes: config.maxRequestBytes,
        cors: createCorsPolicy({ allowedOrigins: config.corsOrigins }),
        tokens,
        logger,
      })
    : undefined;
  const handler = guardRequests<typeof toConnect>(
    lean === undefined
      ? toConnect
      : (req, res) => {
          if (!("stream" in req) && lean.takeRequest(req, res as http.ServerResponse)) return;
          toConnect(req, res);
        },
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
      // A connection past its --max-connection-age grace: its streams end with UNAVAILABLE, and resuming clients go on.
      const endStreams = (session: http2.ServerHttp2Session) => {
        const peer = peerOf(session.socket);
        streams.stopWhere((call) => call.peer === peer, connectionAgeError);
      };
      listener = await listen(
        config,
        closeAgedHttp1(handler, config.maxConnectionAgeMs),
        logger,
        lean?.takeStream,
        endStreams,
      );
      return listener;
    },
    shutdown() {
      if (listener === undefined) return Promise.resolve(true);
      closing ??= shutdown({
        listener,
        streams,
        logger,
        graceMs: config.shutdownGraceMs,
        delayMs: config.shutdownDelayMs,
        onDraining,
        ...(tracing ? { flush: (timeoutMs: number) => tracing.shutdown(timeoutMs) } : {}),
      });
      return closing;
    },
    reloadTokens() {
      if (tokens === undefined || tokenFile === undefined) return false;
      try {
        tokens.replace(readTokenFile(tokenFile));
      } catch (e) {
        logger.warn("auth tokens not reloaded, the old ones stay", { error: (e as Error).message });
        return false;
      }
      logger.info("auth tokens reloaded", { tokens: tokens.size });
      return true;
    },
  };
}
