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
  const guard = new Guard(session, options);
  guard.start();
  return guard;
}

class Guard implements SessionGuard {
  private readonly resetWindowMs: number;
  private open = 0;
  private resetTokens: number;
  private resetCheckedAt = performance.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingDue = Number.POSITIVE_INFINITY;
  private awaitingAck: NodeJS.Timeout | undefined;
  private ageTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private ended = false;
  // Streams the peer opened that JavaScript never saw: nghttp2 (or Node's
  // header limits) refused them outright, a header list past the limit (an
  // HPACK bomb) among them. Each counts against the same budget as a reset:
  // a peer that only sends what is refused is cut too. nghttp2 counts every
  // stream it began (lastProcStreamID), JavaScript only the ones it got, each
  // a tick later: a read of 900 HEADERS has 900 'stream' events to come, so
  // the count waits until they have all come (the turn's check phase), or
  // it would take 899 streams for refused ones.
  private seen = 0;
  private refusedCounted = 0;
  private countDue = false;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    private readonly options: SessionGuardOptions,
  ) {
    this.resetWindowMs = options.resetWindowMs ?? 10_000;
    this.resetTokens = options.maxResets;
  }

  start(): void {
    const { session } = this;
    session.on("stream", (stream: http2.ServerHttp2Stream) => this.onStream(stream));
    // A frame Node could not send on the session itself (stream 0), or a
    // session error: what is left of the session is of no use to anyone.
    session.on("frameError", (_type: number, _code: number, streamId: number) => {
      if (streamId === 0) this.cut("session_error", () => session.destroy());
    });
    session.on("error", () => this.cut("session_error", () => session.destroy()));
    session.once("close", () => this.stopTimers());
    this.armIdle();
    this.schedulePing(this.options.pingIntervalMs);
    this.limitAge();
  }

  suspicious(): boolean {
    this.refill();
    return this.resetTokens <= this.options.maxResets * 0.9;
  }

  openStreams(): number {
    return this.open;
  }

  /** As the stream logs write it, so that one peer reads the same in both. */
  private peer() {
    return peerOf(this.session.socket);
  }

  private get over(): boolean {
    return this.ended || this.session.destroyed;
  }

  private stopTimers(): void {
    this.ended = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.pingTimer);
    clearTimeout(this.awaitingAck);
    clearTimeout(this.ageTimer);
    clearTimeout(this.graceTimer);
  }

  private cut(reason: CutReason, how: () => void): void {
    if (this.over) return;
    this.stopTimers();
    const level = reason === "resets" || reason === "session_error" ? "warn" : "debug";
    this.options.logger[level]("http2 connection closed", { peer: this.peer(), reason, open_streams: this.open });
    how();
  }

  private onStream(stream: http2.ServerHttp2Stream): void {
    const opened = performance.now();
    this.open++;
    this.seen++;
    clearTimeout(this.idleTimer);
    this.countLater();
    stream.once("close", () => {
      this.open--;
      // A session that is going takes its streams with it: those are no peer's resets.
      if (this.over || this.session.closed) return;
      // Rapid reset: the peer reset the stream within a second of opening it,
      // whatever code it gave: NO_ERROR before the answer was done is a reset
      // too (Node says so with `aborted`; a stream that ends well also closes
      // with NO_ERROR). A client that cancels a stream it has been reading is
      // polite, and counts for nothing.
      const reset = stream.rstCode !== NGHTTP2_NO_ERROR || stream.aborted;
      if (reset && performance.now() - opened < RAPID_RESET_MS) this.onResets(1);
      if (this.open === 0 && !this.ended) this.armIdle();
    });
  }

  private schedulePing(inMs: number): void {
    if (this.options.pingIntervalMs <= 0 || this.ended) return;
    const due = performance.now() + inMs;
    // One PING at a time: an earlier one outstanding or already due sooner stays.
    if (this.awaitingAck !== undefined || due >= this.pingDue) return;
    clearTimeout(this.pingTimer);
    this.pingDue = due;
    this.pingTimer = setTimeout(() => this.sendPing(), inMs).unref();
  }

  private sendPing(): void {
    this.pingDue = Number.POSITIVE_INFINITY;
    if (this.over) return;
    const { session } = this;
    this.awaitingAck = setTimeout(
      () => this.cut("ping_timeout", () => session.destroy()),
      this.options.pingTimeoutMs,
    ).unref();
    try {
      session.ping((err) => {
        clearTimeout(this.awaitingAck);
        this.awaitingAck = undefined;
        // A peer that answers PINGs but sends only refused streams shows here, at the latest.
        this.countRefused();
        // An error here means the session is going anyway (closed, destroyed).
        if (err === null) this.schedulePing(this.options.pingIntervalMs);
      });
    } catch {
      // Too many PINGs outstanding, or the session is closing: the timer decides.
    }
  }

  private armIdle(): void {
    if (this.options.idleTimeoutMs > 0) {
      this.idleTimer = setTimeout(
        () =>
          this.cut("idle", () => {
            // GOAWAY NO_ERROR; with no stream open Node then destroys the session.
            this.session.close();
          }),
        this.options.idleTimeoutMs,
      ).unref();
    }
    this.schedulePing(IDLE_PROBE_DELAY_MS);
  }

  private refill(): void {
    const now = performance.now();
    const { maxResets } = this.options;
    this.resetTokens = Math.min(
      maxResets,
      this.resetTokens + ((now - this.resetCheckedAt) * maxResets) / this.resetWindowMs,
    );
    this.resetCheckedAt = now;
  }

  private onResets(n: number): void {
    this.refill();
    this.resetTokens -= n;
    if (this.resetTokens >= 0) return;
    const { session } = this;
    this.cut("resets", () => {
      // Sent now, while nghttp2 may still be working through the same read:
      // it refuses the rest of the burst, and this GOAWAY is the first the peer sees.
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
      // destroy() sends a GOAWAY of its own: with its default code, NO_ERROR,
      // a peer that reads on would see a polite goodbye after the cut. Given a
      // code it sends that one (and emits the error, which cut() ignores).
      setImmediate(() => session.destroy(new Error("too many resets"), NGHTTP2_ENHANCE_YOUR_CALM));
    });
  }

  private countLater(): void {
    if (this.countDue) return;
    this.countDue = true;
    setImmediate(() => {
      this.countDue = false;
      this.countRefused();
    });
  }

  private countRefused(): void {
    if (this.over) return;
    const began = ((this.session.state.lastProcStreamID ?? 0) + 1) >> 1;
    const refused = began - this.seen - this.refusedCounted;
    if (refused <= 0) return;
    this.refusedCounted += refused;
    this.onResets(refused);
  }

  private limitAge(): void {
    const { session, options } = this;
    const maxAgeMs = options.maxAgeMs ?? 0;
    if (maxAgeMs <= 0) return;
    const ageMs = jitteredAge(maxAgeMs, options.random);
    this.ageTimer = setTimeout(() => {
      if (this.over || session.closed) return;
      options.logger.debug("http2 connection reached its maximum age", {
        peer: this.peer(),
        age_ms: Math.round(ageMs),
        open_streams: this.open,
      });
      // GOAWAY NO_ERROR naming the last stream taken; Node destroys the session once its last stream closes.
      session.close();
      this.graceTimer = setTimeout(
        () =>
          this.cut("max_age", () => {
            options.endStreams?.(session);
            setTimeout(() => session.destroy(), LAST_WRITES_MS).unref();
          }),
        options.maxAgeGraceMs ?? 0,
      ).unref();
    }, ageMs).unref();
  }
}
