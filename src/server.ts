import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config } from "./config.js";
import { type Listener, listen } from "./listen.js";
import type { Logger } from "./log.js";
import { PlainRoutes } from "./plain-routes.js";
import { contextValues, createRoutes } from "./routes.js";
import { shutdown } from "./shutdown.js";
import { StreamService } from "./stream-service.js";

// Builds the whole server without binding it, so tests start it on port 0 and
// only main.ts listens on the configured port.

export interface Server {
  readonly streams: StreamService;
  /** Binds config.host:config.port and serves until shutdown(). */
  listen(): Promise<Listener>;
  /** Graceful shutdown; resolves true when nothing had to be cut. */
  shutdown(): Promise<boolean>;
}

export function createServer(config: Config, logger: Logger): Server {
  const streams = new StreamService({
    defaultIntervalMs: config.defaultIntervalMs,
    maxStreams: config.maxStreams,
    logger,
  });
  const plain = new PlainRoutes();
  const handler = connectNodeAdapter({
    routes: createRoutes(streams),
    contextValues,
    readMaxBytes: config.maxRequestBytes,
    fallback: plain.handle,
  });
  let listener: Listener | undefined;
  let closing: Promise<boolean> | undefined;
  return {
    streams,
    async listen() {
      listener = await listen(config, handler, logger);
      return listener;
    },
    shutdown() {
      if (listener === undefined) return Promise.resolve(true);
      closing ??= shutdown({ listener, streams, logger, graceMs: config.shutdownGraceMs });
      return closing;
    },
  };
}
