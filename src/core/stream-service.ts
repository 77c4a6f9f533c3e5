import { Code, ConnectError } from "@connectrpc/connect";
import { maxDurationError, sendTimeoutError, shutdownError } from "./errors.js";
import { planStream, type StreamParams, type StreamPlan } from "./greeting.js";
import { type GreetingSink, GreetingStream, type StreamOwner } from "./greeting-stream.js";
import { ObserverQueue } from "./observer-queue.js";
import { Pacer } from "./pacer.js";
import { StallWatch } from "./stall-watch.js";
import { TurnBudget } from "./turn-budget.js";

// The one stream implementation. Every road (the lean RPC road, connect-node,
// GET /stream) gets its streams here, in two steps: admit() validates the
// request and checks the limits, giving the plan (the name greeted, the
// counters, the pace); start() runs the plan into the road's sink, which the
// road builds knowing what it will carry. Validation, pacing, limits,
// fairness and the live-stream registry live here, so no road can skip them.
// What happens around a stream (traces, logs, metrics) is the observers',
// told through a queue after the stream's messages are on their way; this
// file knows no transport, no logger and no tracer.

/** Who is calling, as the front door knows it from the request's birth. */
export interface CallInfo {
  /** Remote address and port, as logs show it. */
  peer: string;
  /**
   * The client's address, as the per-client limits count it: the peer's
   * address, or the one a trusted proxy forwarded (IPv6 by its /64).
   */
  client: string;
  /** The connection the call came on (its HTTP/2 session or its socket): streams belong to it by identity. */
  connection: object;
  /** "grpc", "grpc-web", "connect", "ndjson", "sse"; "" until the road knows. */
  protocol: string;
  /** "1.0", "1.1" or "2.0". */
  httpVersion: string;
  /** Echoed in logs and the x-request-id response header. */
  requestId: string;
  /** When the caller's deadline passes (a performance.now() time), if it set one. */
  deadlineAt?: number | undefined;
  /** The caller's W3C trace context (the traceparent and tracestate headers) as sent, for the tracing observer. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
  /** The trace and span the call is known by, once the tracing observer gave it a span; the logs carry them. */
  trace?: { readonly traceId: string; readonly spanId: string } | undefined;
  /** The tracing observer's span, from opened() to ended(): opaque here, the core knows no tracing library. */
  span?: unknown;
}

/** What a refused client asked for, as far as it could be read before the refusal: for its log line. */
export interface Asked {
  name?: string | undefined;
  interval?: string | undefined;
  limit?: string | undefined;
  startAt?: string | undefined;
}

/** Why a stream ended, as logs and metrics report it. */
export type EndReason =
  | "limit"
  | "cancelled"
  | "deadline"
  | "shutdown"
  | "max_duration"
  | "max_age"
  | "send_timeout"
  | "error";

export interface StreamEnd {
  reason: EndReason;
  sent: number;
  durationMs: number;
  error?: ConnectError;
}

/**
 * Watches stream life cycles (traces, logs, metrics). Called once per call,
 * never per message, in the order given, a few turns after the fact at
 * most: `at` is when it happened (Date.now()).
 */
export interface StreamObserver {
  /** A call refused before its stream opened: bad input, too many streams, no token, shutting down. */
  rejected?(call: CallInfo, asked: Asked, error: ConnectError, at: number): void;
  opened?(call: CallInfo, name: string, at: number): void;
  /** Once per opened stream, whatever ended it. */
  ended?(call: CallInfo, name: string, end: StreamEnd, at: number): void;
}

/** A request the server has agreed to serve: what start() runs. Start it in the same turn it was admitted. */
export interface Admission {
  readonly plan: StreamPlan;
  readonly call: CallInfo;
}

export interface StreamServiceOptions {
  /** Pause between messages for a request that leaves interval unset. Default 2000. */
  defaultIntervalMs?: number;
  /** Streams open at once; past it a call fails with RESOURCE_EXHAUSTED. Default 50000. */
  maxStreams?: number;
  /** Streams open at once from one client address (CallInfo.client); past it RESOURCE_EXHAUSTED. Default maxStreams. */
  maxStreamsPerClient?: number;
  /**
   * A stream open this long ends with UNAVAILABLE (which resuming clients
   * retry from the next counter), reported as "max_duration". Default 0: never.
   */
  maxDurationMs?: number;
  /** A stream whose peer takes nothing for this long is closed, reported as "send_timeout". Default 0: never. */
  sendTimeoutMs?: number;
  /** How long all streams together may run in one turn of the event loop before yielding to I/O. Default 10. */
  turnSliceMs?: number;
  /** Told of every call, in this order, a few turns later at most (logs, spans). Default none. */
  observers?: readonly StreamObserver[];
  /** Told of every call at once, before the queued observers: plain counters only (metrics). Default none. */
  counters?: readonly StreamObserver[];
  /** A bug in an observer or a sink, caught so that it ends no other stream. Default: ignored. */
  onError?: (e: unknown) => void;
}

export { type GreetingSink, GreetingStream };

export class GreetingStreams implements StreamOwner {
  readonly budget: TurnBudget;
  readonly pacer: Pacer;
  private readonly live = new Set<GreetingStream>();
  private readonly perClient = new Map<string, number>();
  private readonly defaultIntervalMs: number;
  private readonly maxStreams: number;
  private readonly maxStreamsPerClient: number;
  private readonly maxDurationMs: number;
  private readonly events: ObserverQueue;
  private readonly counters: readonly StreamObserver[];
  private readonly stalls: StallWatch<GreetingStream> | undefined;
  private stopping: ConnectError | undefined;
  /** Messages sent by every stream since start: a plain count, cheap enough for the hot loop. */
  messagesSent = 0;

  constructor(options: StreamServiceOptions = {}) {
    const onError = options.onError ?? (() => {});
    this.defaultIntervalMs = options.defaultIntervalMs ?? 2000;
    this.maxStreams = options.maxStreams ?? 50_000;
    this.maxStreamsPerClient = options.maxStreamsPerClient ?? this.maxStreams;
    this.maxDurationMs = options.maxDurationMs ?? 0;
    this.budget = new TurnBudget(options.turnSliceMs ?? 10, onError);
    this.pacer = new Pacer(this.budget, onError);
    this.events = new ObserverQueue(options.observers ?? [], this.budget, onError);
    this.counters = options.counters ?? [];
    const sendTimeoutMs = options.sendTimeoutMs ?? 0;
    if (sendTimeoutMs > 0) {
      const error = sendTimeoutError(sendTimeoutMs);
      this.stalls = new StallWatch(sendTimeoutMs, (s) => {
        // A peer that reads nothing at all loses its connection, and with it every stream on it: those end alike.
        if (s.stall(error)) this.stopConnection(s.call.connection, error, "send_timeout", true);
      });
    }
  }

  /** Streams open right now, on every road. */
  get liveCount(): number {
    return this.live.size;
  }

  /** Streams waiting for their peer to read. */
  get blockedCount(): number {
    return this.stalls?.size ?? 0;
  }

  /** Ends every open stream with `reason` (UNAVAILABLE "server is shutting down"), and refuses new ones. */
  stopAll(reason: ConnectError = shutdownError): void {
    this.stopping = reason;
    for (const s of [...this.live]) s.stop(reason);
  }

  /**
   * Ends the open streams of one connection (by identity) with `error`,
   * reported as `reason`: a connection that reached its maximum age, or one
   * already closed (`gone`: nothing is written to it). Returns how many it stopped.
   */
  stopConnection(connection: object, error: ConnectError, reason: EndReason = "max_age", gone = false): number {
    let stopped = 0;
    for (const s of [...this.live]) {
      if (s.call.connection !== connection) continue;
      if (gone) s.stall(error);
      else s.stop(error, reason);
      stopped++;
    }
    return stopped;
  }

  /**
   * Reports a call a road or the front door refused before it could be
   * admitted (no token, a malformed query string), so that it is logged and
   * counted like the refusals admit() makes.
   */
  refuse(call: CallInfo, asked: Asked, error: ConnectError): void {
    for (const c of this.counters) c.rejected?.(call, asked, error, 0);
    this.events.rejected(call, asked, error);
  }

  /**
   * Validates a request and checks the limits. Throws a ConnectError when
   * the call is refused (bad input, too many streams, shutting down), after
   * reporting it: the road's status is still its own to choose then.
   */
  admit(params: StreamParams, call: CallInfo): Admission {
    try {
      if (this.stopping !== undefined) throw this.stopping;
      if (this.live.size >= this.maxStreams) {
        throw new ConnectError("too many open streams (try again later)", Code.ResourceExhausted);
      }
      if ((this.perClient.get(call.client) ?? 0) >= this.maxStreamsPerClient) {
        throw new ConnectError("too many open streams from this address (try again later)", Code.ResourceExhausted);
      }
      return { plan: planStream(params, this.defaultIntervalMs), call };
    } catch (e) {
      const error = ConnectError.from(e);
      this.refuse(call, askedOf(params), error);
      throw error;
    }
  }

  /** Runs an admitted request into `sink`: begin() writes its first message. */
  start(admission: Admission, sink: GreetingSink): GreetingStream {
    const { plan, call } = admission;
    const stream = new GreetingStream(this, plan, call, sink);
    this.live.add(stream);
    this.perClient.set(call.client, (this.perClient.get(call.client) ?? 0) + 1);
    if (this.maxDurationMs > 0)
      stream.stopAfter(this.maxDurationMs, (next) => maxDurationError(this.maxDurationMs, next));
    for (const c of this.counters) c.opened?.(call, plan.name, 0);
    this.events.opened(call, plan.name);
    return stream;
  }

  /** Delivers what the observers have not heard yet, now: for a scrape, and at shutdown. */
  flushObservers(): void {
    this.events.flush();
  }

  /** StreamOwner: a stream ended. */
  ended(stream: GreetingStream, end: StreamEnd): void {
    this.live.delete(stream);
    const client = stream.call.client;
    const n = (this.perClient.get(client) ?? 1) - 1;
    if (n === 0) this.perClient.delete(client);
    else this.perClient.set(client, n);
    for (const c of this.counters) c.ended?.(stream.call, stream.name, end, 0);
    this.events.ended(stream.call, stream.name, end);
  }

  /** StreamOwner: a message was sent. */
  counted(): void {
    this.messagesSent++;
  }

  /** StreamOwner: the stream waits for its peer. */
  blocked(stream: GreetingStream): void {
    this.stalls?.block(stream);
  }

  unblocked(stream: GreetingStream): void {
    this.stalls?.unblock(stream);
  }
}

/** The request as its refusal's log line shows it. */
function askedOf(params: StreamParams): Asked {
  const { interval } = params;
  return {
    name: params.name,
    interval: interval === undefined ? undefined : durationText(interval.seconds, interval.nanos),
    limit: params.limit === 0n ? undefined : String(params.limit),
    startAt: params.startAt === 0n ? undefined : String(params.startAt),
  };
}

/** A Duration as proto JSON writes one ("2s", "0.5s", "-1s"), valid or not. */
function durationText(seconds: bigint, nanos: number): string {
  const negative = seconds < 0n || nanos < 0;
  const whole = seconds < 0n ? -seconds : seconds;
  const fraction = nanos === 0 ? "" : `.${String(Math.abs(nanos)).padStart(9, "0").replace(/0+$/, "")}`;
  return `${negative ? "-" : ""}${whole}${fraction}s`;
}
