import * as http2 from "node:http2";
import { peerOf } from "../http/peer.js";
import type { Logger } from "../ops/log.js";
import { jitteredAge } from "./connection-age.js";

// Every HTTP/2 session gets an end. Node leaves three kinds open for good:
// - When nghttp2 ends a session for a peer's protocol violation (a header
//   block too large, a frame too long, its own rapid-reset limit), it sends
//   GOAWAY and stops reading, but tells JavaScript nothing and never closes
//   the socket. Its open streams stay open, and so does the socket, in
//   CLOSE-WAIT once the peer gives up. Such a session still takes PINGs and
//   never answers them: a PING without an ACK is how we find it.
// - A peer that resets streams as fast as it opens them (CVE-2023-44487)
//   costs a stream's setup each time; nghttp2 stops it only after 1,000.
// - A session with no stream at all is kept forever.
//
// So each session gets an idle timer (no open stream for idleTimeoutMs:
// GOAWAY, close), a PING every pingIntervalMs and, sooner, a second after it
// turns idle (no ACK within pingTimeoutMs: destroy), and a budget of streams
// reset before they were answered or refused outright (past it: GOAWAY
// ENHANCE_YOUR_CALM, destroy).
//
// And, when asked, a maximum age, as grpc-go's MaxConnectionAge and
// MaxConnectionAgeGrace: a client keeps one HTTP/2 connection for all its
// streams, so a per-connection balancer never moves it to a replica added
// later. Past the age the session gets GOAWAY NO_ERROR (the client opens its
// next streams on a new connection, through the balancer); past the grace,
// the streams still open are ended with a status (endStreams) and the
// session is closed.

export interface SessionGuardOptions {
  /** A session with no open stream for this long gets GOAWAY and is closed; 0 never. */
  idleTimeoutMs: number;
  /** Each session is sent a PING this often; 0 never (and no probe when idle either). */
  pingIntervalMs: number;
  /** A PING not acknowledged within this time destroys the session. */
  pingTimeoutMs: number;
  /** Streams a peer may reset within resetWindowMs; past that the session is cut. */
  maxResets: number;
  /** The window of maxResets. Default 10000. */
  resetWindowMs?: number;
  logger: Logger;
  /** A session this old (±10% jitter) gets GOAWAY NO_ERROR and takes no new stream; 0 or unset never. */
  maxAgeMs?: number;
  /** How long after that GOAWAY its open streams may go on before endStreams() and the close. Default 0. */
  maxAgeGraceMs?: number;
  /**
   * Ends the session's open streams when the grace is over, each with a
   * status its protocol carries (UNAVAILABLE, which resuming clients retry).
   * Default none: what is still open is reset with the session.
   */
  endStreams?: (session: http2.ServerHttp2Session) => void;
  /** For tests: returns [0, 1), for the jitter. Default Math.random. */
  random?: () => number;
}

export type CutReason = "idle" | "ping_timeout" | "resets" | "session_error" | "max_age";

/** After a session turns idle, how soon it is probed: one that went quiet because nghttp2 ended it is found fast. */
const IDLE_PROBE_DELAY_MS = 1000;

/**
 * After the max-age grace, how long the ended streams' last frames (their
 * statuses) get to leave before the session is destroyed: a peer that reads
 * nothing would otherwise hold it open.
 */
const LAST_WRITES_MS = 1000;

const { NGHTTP2_NO_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** A stream reset sooner than this after it opened counts against the peer's budget. */
const RAPID_RESET_MS = 1000;

/** What the rest of the server may ask of a session's guard. */
export interface SessionGuard {
  /**
   * True once the peer reset or made us refuse streams in numbers (a tenth of
   * its budget): its new streams then wait a turn before they are served, so
   * that a stream reset in the same read costs nothing.
   */
  suspicious(): boolean;
  /** The session's streams that are open now. */
  openStreams(): number;
}

export function guardSession(session: http2.ServerHttp2Session, options: SessionGuardOptions): SessionGuard {
  const resetWindowMs = options.resetWindowMs ?? 10_000;
  let open = 0;
  let resetTokens = options.maxResets;
  let resetCheckedAt = performance.now();
  let idleTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  let pingDue = Number.POSITIVE_INFINITY;
  let awaitingAck: NodeJS.Timeout | undefined;
  let ageTimer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  let ended = false;

  // As the stream logs write it, so that one peer reads the same in both.
  const peer = () => peerOf(session.socket);

  const stopTimers = () => {
    ended = true;
    clearTimeout(idleTimer);
    clearTimeout(pingTimer);
    clearTimeout(awaitingAck);
    clearTimeout(ageTimer);
    clearTimeout(graceTimer);
  };

  const cut = (reason: CutReason, how: () => void) => {
    if (ended || session.destroyed) return;
    stopTimers();
    const level = reason === "resets" || reason === "session_error" ? "warn" : "debug";
    options.logger[level]("http2 connection closed", { peer: peer(), reason, open_streams: open });
    how();
  };

  const schedulePing = (inMs: number) => {
    if (options.pingIntervalMs <= 0 || ended) return;
    const due = performance.now() + inMs;
    // One PING at a time: an earlier one outstanding or already due sooner stays.
    if (awaitingAck !== undefined || due >= pingDue) return;
    clearTimeout(pingTimer);
    pingDue = due;
    pingTimer = setTimeout(sendPing, inMs).unref();
  };

  const sendPing = () => {
    pingDue = Number.POSITIVE_INFINITY;
    if (ended || session.destroyed) return;
    awaitingAck = setTimeout(() => cut("ping_timeout", () => session.destroy()), options.pingTimeoutMs).unref();
    try {
      session.ping((err) => {
        clearTimeout(awaitingAck);
        awaitingAck = undefined;
        // A peer that answers PINGs but sends only refused streams shows here, at the latest.
        countRefused();
        // An error here means the session is going anyway (closed, destroyed).
        if (err === null) schedulePing(options.pingIntervalMs);
      });
    } catch {
      // Too many PINGs outstanding, or the session is closing: the timer decides.
    }
  };

  const armIdle = () => {
    if (options.idleTimeoutMs > 0) {
      idleTimer = setTimeout(
        () =>
          cut("idle", () => {
            // GOAWAY NO_ERROR; with no stream open Node then destroys the session.
            session.close();
          }),
        options.idleTimeoutMs,
      ).unref();
    }
    schedulePing(IDLE_PROBE_DELAY_MS);
  };

  const refill = () => {
    const now = performance.now();
    resetTokens = Math.min(
      options.maxResets,
      resetTokens + ((now - resetCheckedAt) * options.maxResets) / resetWindowMs,
    );
    resetCheckedAt = now;
  };

  const onResets = (n: number) => {
    refill();
    resetTokens -= n;
    if (resetTokens >= 0) return;
    cut("resets", () => {
      // Sent now, while nghttp2 may still be working through the same read:
      // it refuses the rest of the burst, and this GOAWAY is the first the peer sees.
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
      // destroy() sends a GOAWAY of its own: with its default code, NO_ERROR,
      // a peer that reads on would see a polite goodbye after the cut. Given a
      // code it sends that one (and emits the error, which cut() ignores).
      setImmediate(() => session.destroy(new Error("too many resets"), NGHTTP2_ENHANCE_YOUR_CALM));
    });
  };

  // Streams the peer opened that JavaScript never saw: nghttp2 (or Node's
  // header limits) refused them outright, a header list past the limit (an
  // HPACK bomb) among them. Each counts against the same budget as a reset:
  // a peer that only sends what is refused is cut too. nghttp2 counts every
  // stream it began (lastProcStreamID), JavaScript only the ones it got, each
  // a tick later: a read of 900 HEADERS has 900 'stream' events to come, so
  // the count waits until they have all come (the turn's check phase), or
  // it would take 899 streams for refused ones.
  let seen = 0;
  let refusedCounted = 0;
  let countDue = false;
  const countLater = () => {
    if (countDue) return;
    countDue = true;
    setImmediate(() => {
      countDue = false;
      countRefused();
    });
  };
  const countRefused = () => {
    if (ended || session.destroyed) return;
    const began = ((session.state.lastProcStreamID ?? 0) + 1) >> 1;
    const refused = began - seen - refusedCounted;
    if (refused <= 0) return;
    refusedCounted += refused;
    onResets(refused);
  };

  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    const opened = performance.now();
    open++;
    seen++;
    clearTimeout(idleTimer);
    countLater();
    stream.once("close", () => {
      open--;
      // A session that is going takes its streams with it: those are no peer's resets.
      if (ended || session.destroyed || session.closed) return;
      // Rapid reset: the peer reset the stream within a second of opening it,
      // whatever code it gave: NO_ERROR before the answer was done is a reset
      // too (Node says so with `aborted`; a stream that ends well also closes
      // with NO_ERROR). A client that cancels a stream it has been reading is
      // polite, and counts for nothing.
      const reset = stream.rstCode !== NGHTTP2_NO_ERROR || stream.aborted;
      if (reset && performance.now() - opened < RAPID_RESET_MS) onResets(1);
      if (open === 0 && !ended) armIdle();
    });
  });
  // A frame Node could not send on the session itself (stream 0), or a
  // session error: what is left of the session is of no use to anyone.
  session.on("frameError", (_type: number, _code: number, streamId: number) => {
    if (streamId === 0) cut("session_error", () => session.destroy());
  });
  session.on("error", () => cut("session_error", () => session.destroy()));
  session.once("close", stopTimers);
  armIdle();
  schedulePing(options.pingIntervalMs);
  const maxAgeMs = options.maxAgeMs ?? 0;
  if (maxAgeMs > 0) {
    const ageMs = jitteredAge(maxAgeMs, options.random);
    ageTimer = setTimeout(() => {
      if (ended || session.destroyed || session.closed) return;
      options.logger.debug("http2 connection reached its maximum age", {
        peer: peer(),
        age_ms: Math.round(ageMs),
        open_streams: open,
      });
      // GOAWAY NO_ERROR naming the last stream taken; Node destroys the session once its last stream closes.
      session.close();
      graceTimer = setTimeout(
        () =>
          cut("max_age", () => {
            options.endStreams?.(session);
            setTimeout(() => session.destroy(), LAST_WRITES_MS).unref();
          }),
        options.maxAgeGraceMs ?? 0,
      ).unref();
    }, ageMs).unref();
  }
  return {
    suspicious() {
      refill();
      return resetTokens <= options.maxResets * 0.9;
    },
    openStreams: () => open,
  };
}
