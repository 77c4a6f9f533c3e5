import type { ServerHttp2Session } from "node:http2";
import type { GreetingStreams } from "../core/stream-service.js";
import { writesPending } from "../http/h2.js";
import type { Logger } from "../ops/log.js";
import type { Listener } from "./listen.js";

// Graceful shutdown. http2Server.close() leaves open sessions alone, and an
// HTTP/1.1 keep-alive socket outlives its last response, so we do it by hand:
// stop accepting, end every stream with UNAVAILABLE, GOAWAY every HTTP/2
// session once its streams have written their final status, close idle
// HTTP/1.1 sockets, and destroy whatever is left when the grace period is over.

export interface ShutdownOptions {
  listener: Listener;
  streams: GreetingStreams;
  logger: Logger;
  /** How long connections get to finish before they are destroyed. */
  graceMs: number;
  /**
   * How long the server goes on serving, not ready, before it closes: a load
   * balancer that polls /readyz (or Watches health) sees it drain and stops
   * sending new work first. Default 0: close at once.
   */
  delayMs?: number;
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

/**
 * How long a session's streams get to write their final status before a
 * session whose peer reads nothing (our writes still queued) gets GOAWAY
 * anyway: the GOAWAY must not wait for it.
 */
const FINAL_STATUS_WAIT_MS = 1000;

/** Resolves true when everything closed within the grace period, false when it had to destroy sockets. */
export async function shutdown(options: ShutdownOptions): Promise<boolean> {
  const { listener, streams, logger, graceMs } = options;
  const began = performance.now();
  const delayMs = options.delayMs ?? 0;
  logger.info("shutting down", { live_streams: streams.liveCount, grace_ms: graceMs, delay_ms: delayMs });
  options.onDraining?.();
  // Readiness has dropped; streams and new connections are still served while the delay lasts.
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  // The grace period counts from here.
  const started = performance.now();
  const stopped = listener.stopAccepting();
  streams.stopAll();
  // GOAWAY only once a session's streams have closed, that is once their
  // final status (gRPC trailers, Connect's end-of-stream message) has gone
  // out, and once the peer has read it: a PING goes after the last frame and
  // GOAWAY follows its ACK. A GOAWAY first is correct HTTP/2, but curl 7.88
  // drops the trailers of a stream when the GOAWAY comes in the same read
  // (it closes the connection before it hands them over), and the stream
  // looks cut; and nghttp2 sends a GOAWAY ahead of HEADERS still queued, so
  // one sent early can overtake the trailers. Only a peer that reads nothing
  // (its socket still holds our writes after the wait) gets its GOAWAY
  // before its streams closed; every other waits, within the grace.
  const pinged = new WeakSet<object>();
  const goneAway = new WeakSet<object>();
  const goaway = (session: ServerHttp2Session) => {
    if (goneAway.has(session)) return;
    goneAway.add(session);
    // close() sends GOAWAY and lets the open streams finish.
    if (!session.closed && !session.destroyed) session.close();
  };
  /** Moves each session on; after the wait (`late`), a peer that reads nothing too. True when every session had its GOAWAY. */
  const goawayWhenRead = (late: boolean): boolean => {
    let waiting = false;
    for (const session of listener.sessions) {
      if (goneAway.has(session)) continue;
      if (late && writesPending(session)) {
        goaway(session);
        continue;
      }
      waiting = true;
      if (pinged.has(session) || listener.openStreams(session) > 0) continue;
      pinged.add(session);
      try {
        // The callback also runs (with an error) when the session goes first; a PING that
        // could not be sent (too many outstanding) is tried again on the next look.
        if (session.ping(() => goaway(session)) === false) pinged.delete(session);
      } catch {
        goaway(session);
      }
    }
    return !waiting;
  };
  const statusWaitMs = Math.min(FINAL_STATUS_WAIT_MS, graceMs / 2);
  const clean = await new Promise<boolean>((resolve) => {
    let poll: NodeJS.Timeout | undefined;
    const check = () => {
      const allGoneAway = goawayWhenRead(performance.now() - started >= statusWaitMs);
      listener.closeIdleConnections();
      if (listener.sockets.size === 0) return finish(true);
      // The streams end within a few turns (a rejected wait, then the road's
      // writes): look often until every session had its GOAWAY, then now and then.
      poll = setTimeout(check, allGoneAway ? 25 : 5);
    };
    const timer = setTimeout(() => finish(false), graceMs);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      clearTimeout(poll);
      resolve(ok);
    };
    check();
  });
  if (!clean) {
    logger.warn("grace period over, closing connections", { sockets: listener.sockets.size });
    for (const socket of listener.sockets) socket.destroy();
    for (const session of listener.sessions) session.destroy();
  }
  await stopped;
  // The streams' end lines and spans wait in the turn budget's line like any
  // work, a few turns behind; with thousands ended at once the last socket
  // can close first, and the process would exit with them unsaid.
  streams.flushObservers();
  await options.flush?.(Math.max(graceMs - (performance.now() - started), MIN_FLUSH_MS));
  logger.info("shut down", { clean, duration_ms: Math.round(performance.now() - began) });
  return clean;
}

/**
 * SIGINT and SIGTERM run `stop` once and exit with the status it resolves
 * to; a second signal, from someone who will not wait, exits at once with 1.
 * The one process and the primary of --workers stop alike.
 */
export function exitOnStopSignals(logger: Logger, stop: () => Promise<number>): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn("second signal, exiting now", { signal });
      process.exit(1);
    }
    logger.info("signal received", { signal });
    void stop().then((status) => process.exit(status));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
