import type { GreetingStreams } from "../core/stream-service.js";
import type { Logger } from "../ops/log.js";
import type { Listener } from "./listen.js";

// Graceful shutdown. http2Server.close() leaves open sessions alone, and an
// HTTP/1.1 keep-alive socket outlives its last response, so we do it by hand:
// stop accepting, end every stream with UNAVAILABLE, GOAWAY every HTTP/2
// session, close idle HTTP/1.1 sockets, and destroy whatever is left when the
// grace period is over.

export interface ShutdownOptions {
  listener: Listener;
  streams: GreetingStreams;
  logger: Logger;
  /** How long connections get to finish before they are destroyed. */
  graceMs: number;
  /** Called first, before anything closes (health turns NOT_SERVING). */
  onDraining?: () => void;
  /**
   * Called last, once every stream ended: sends what telemetry is pending
   * (the spans of the streams just ended), within the time it is given.
   */
  flush?: (timeoutMs: number) => Promise<void>;
}

/** What a flush gets when the grace period is spent: the spans of the streams it cut are the ones worth having. */
const MIN_FLUSH_MS = 1000;

/** Resolves true when everything closed within the grace period, false when it had to destroy sockets. */
export async function shutdown(options: ShutdownOptions): Promise<boolean> {
  const { listener, streams, logger, graceMs } = options;
  const started = performance.now();
  logger.info("shutting down", { live_streams: streams.liveCount, grace_ms: graceMs });
  options.onDraining?.();
  const stopped = listener.stopAccepting();
  streams.stopAll();
  for (const session of listener.sessions) {
    // close() sends GOAWAY and lets the open streams finish: they are ending now.
    session.close();
  }
  const clean = await new Promise<boolean>((resolve) => {
    const check = () => {
      listener.http1?.closeIdleConnections();
      if (listener.sockets.size === 0) finish(true);
    };
    const timer = setTimeout(() => finish(false), graceMs);
    const poll = setInterval(check, 25);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve(ok);
    };
    check();
  });
  if (!clean) {
    logger.warn("grace period over, closing connections", { sockets: listener.sockets.size });
    for (const socket of listener.sockets) socket.destroy();
    for (const session of listener.sessions) session.destroy();
  }
  // Stops the HTTP/1.1 connection-checking timer; the callback takes the
  // "not running" error that a server which never listened itself reports.
  listener.http1?.close(() => {});
  await stopped;
  await options.flush?.(Math.max(graceMs - (performance.now() - started), MIN_FLUSH_MS));
  logger.info("shut down", { clean, duration_ms: Math.round(performance.now() - started) });
  return clean;
}
