import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamResponse } from "../../gen/stream/v1/stream_pb.js";
import { shutdownError } from "./errors.js";
import { greetingText, planStream, type StreamParams, type StreamPlan } from "./greeting.js";
import { Pacer } from "./pacer.js";
import { TurnBudget } from "./turn-budget.js";

// The one stream implementation. Every road (the gRPC lean path,
// connect-node, GET /stream) calls open(): validation, pacing, limits,
// fairness and the live-stream registry live here, so no road can skip them.
// What happens around a stream (traces, logs, metrics) is the observers';
// this file knows no transport, no logger and no tracer.

/** Who is calling, as the road that accepted the call knows it. */
export interface CallInfo {
  /** Remote address and port. */
  peer: string;
  /** "grpc", "grpc-web", "connect", "ndjson", "sse". */
  protocol: string;
  /** "1.1" or "2.0". */
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

/** Why a stream ended, as logs and metrics report it. */
export type EndReason = "limit" | "cancelled" | "deadline" | "shutdown" | "error";

export interface StreamEnd {
  reason: EndReason;
  sent: number;
  durationMs: number;
  error?: ConnectError;
}

/** Watches stream life cycles (traces, logs, metrics). Called once per call, never per message, in the order given. */
export interface StreamObserver {
  /** A call refused before its stream opened: bad input, too many streams, shutting down. */
  rejected?(call: CallInfo, name: string, error: ConnectError): void;
  opened?(call: CallInfo, name: string): void;
  /** Once per opened stream, whatever ended it. */
  ended?(call: CallInfo, name: string, end: StreamEnd): void;
}

export interface StreamServiceOptions {
  /** Pause between messages for a request that leaves interval unset. Default 2000. */
  defaultIntervalMs?: number;
  /** Streams open at once; past it open() fails with RESOURCE_EXHAUSTED. Default 50000. */
  maxStreams?: number;
  /** How long all streams together may run in one turn of the event loop before yielding to I/O. Default 10. */
  turnSliceMs?: number;
  /** Told of every call, in this order. Default none. */
  observers?: readonly StreamObserver[];
}

interface LiveStream {
  readonly call: CallInfo;
  stopReason: ConnectError | undefined;
  stop(reason: ConnectError): void;
}

export class GreetingStreams {
  readonly pacer = new Pacer();
  private readonly budget: TurnBudget;
  private readonly live = new Set<LiveStream>();
  private readonly defaultIntervalMs: number;
  private readonly maxStreams: number;
  private readonly observers: readonly StreamObserver[];
  private stopping: ConnectError | undefined;
  /** Messages yielded by every stream since start: a plain count, cheap enough for the hot loop. */
  messagesSent = 0;

  constructor(options: StreamServiceOptions = {}) {
    this.defaultIntervalMs = options.defaultIntervalMs ?? 2000;
    this.maxStreams = options.maxStreams ?? 50_000;
    this.budget = new TurnBudget(options.turnSliceMs ?? 10);
    this.observers = options.observers ?? [];
  }

  /** Streams open right now, on every road. */
  get liveCount(): number {
    return this.live.size;
  }

  /** Ends every open stream with `reason` (UNAVAILABLE "server is shutting down"), and refuses new ones. */
  stopAll(reason: ConnectError = shutdownError): void {
    this.stopping = reason;
    for (const s of this.live) s.stop(reason);
  }

  /**
   * Ends the open streams whose call `match` picks with `reason`, as stopAll()
   * does, and leaves new ones alone: the streams of one connection that
   * reached its maximum age. Returns how many it stopped.
   */
  stopWhere(match: (call: CallInfo) => boolean, reason: ConnectError): number {
    let stopped = 0;
    for (const s of this.live) {
      if (s.stopReason !== undefined || !match(s.call)) continue;
      s.stop(reason);
      stopped++;
    }
    return stopped;
  }

  /**
   * Reports a call a road refused before it could ask for its stream (a
   * malformed query string), so that it is logged and counted like the
   * refusals open() makes.
   */
  refuse(call: CallInfo, name: string, error: ConnectError): void {
    for (const o of this.observers) o.rejected?.(call, name, error);
  }

  /**
   * The greetings for one call. Validates on the first next(), so a road
   * learns of a bad request before it commits to a response status; sends the
   * first message at once, because response headers only leave with it.
   */
  async *open(params: StreamParams, call: CallInfo, signal: AbortSignal): AsyncGenerator<StreamResponse, void> {
    let plan: StreamPlan;
    try {
      if (this.stopping !== undefined) throw this.stopping;
      if (this.live.size >= this.maxStreams) {
        throw new ConnectError("too many open streams (try again later)", Code.ResourceExhausted);
      }
      plan = planStream(params, this.defaultIntervalMs);
    } catch (e) {
      const error = ConnectError.from(e);
      for (const o of this.observers) o.rejected?.(call, params.name, error);
      throw error;
    }
    const ticket = this.pacer.ticket();
    const self: LiveStream = {
      call,
      stopReason: undefined,
      stop(reason) {
        self.stopReason = reason;
        ticket.cancel(reason);
      },
    };
    const started = performance.now();
    let sent = 0;
    let reason: EndReason | undefined;
    let error: ConnectError | undefined;
    let waiting = false;
    let finished = false;
    // Frees the stream's slot and reports its end, once, whichever comes first:
    // the generator's own finally, or an abort while it sits at a yield.
    const finish = (why: EndReason) => {
      if (finished) return;
      finished = true;
      signal.removeEventListener("abort", onAbort);
      ticket.cancel(undefined);
      this.live.delete(self);
      const end: StreamEnd = { reason: why, sent, durationMs: Math.round(performance.now() - started) };
      if (error !== undefined) end.error = error;
      for (const o of this.observers) o.ended?.(call, plan.name, end);
    };
    const onAbort = () => {
      if (waiting) {
        ticket.cancel(signal.reason);
        return;
      }
      // Suspended at a yield, the generator runs again only when its consumer
      // pulls, and a consumer may never: connect-node waits for 'drain' or
      // 'error' after a write that filled the window, and a reset HTTP/2
      // response emits neither. The client is gone: free its stream now.
      finish(endReason(signal.reason, self.stopReason, signal, call.deadlineAt));
    };
    this.live.add(self);
    signal.addEventListener("abort", onAbort);
    for (const o of this.observers) o.opened?.(call, plan.name);
    try {
      let due = performance.now();
      for (let counter = plan.first; ; counter++) {
        // Every road pulls its messages through here, so this one check keeps
        // every road fair: no stream, on any protocol, holds the loop.
        const turn = this.budget.take();
        if (turn !== undefined) await turn;
        const abortReason = self.stopReason ?? (signal.aborted ? signal.reason : undefined);
        if (abortReason !== undefined) throw abortReason;
        yield greeting(plan.name, counter);
        sent++;
        this.messagesSent++;
        if (counter === plan.last) {
          reason = "limit";
          return;
        }
        if (plan.intervalMs > 0) {
          // Keep to the schedule (no drift), but do not burst to catch up after a stall.
          const now = performance.now();
          due = Math.max(due + plan.intervalMs, now);
          waiting = true;
          try {
            await ticket.sleepUntil(plan.intervalMs, due);
          } finally {
            waiting = false;
          }
        }
      }
    } catch (e) {
      error = ConnectError.from(e);
      reason = endReason(e, self.stopReason, signal, call.deadlineAt);
      throw error;
    } finally {
      // A consumer that stops pulling (client gone mid-write) ends us through return().
      finish(
        reason ?? (signal.aborted ? endReason(signal.reason, self.stopReason, signal, call.deadlineAt) : "cancelled"),
      );
    }
  }
}

function greeting(name: string, counter: bigint): StreamResponse {
  const ms = Date.now();
  return {
    $typeName: "stream.v1.StreamResponse",
    message: greetingText(name, counter),
    counter,
    timestamp: {
      $typeName: "google.protobuf.Timestamp",
      seconds: BigInt(Math.floor(ms / 1000)),
      nanos: (ms % 1000) * 1_000_000,
    },
  };
}

// A client that gives up at its own deadline often closes the call a moment
// before the server's deadline timer fires; count that as the deadline.
const DEADLINE_SLACK_MS = 50;

function endReason(
  e: unknown,
  stopReason: ConnectError | undefined,
  signal: AbortSignal,
  deadlineAt: number | undefined,
): EndReason {
  // Once the server stops a stream, however it then ends (its own error, or sockets cut after the grace period).
  if (stopReason !== undefined) return "shutdown";
  const code = ConnectError.from(e).code;
  if (code === Code.DeadlineExceeded) return "deadline";
  if (signal.aborted && e === signal.reason) {
    // The call's own signal: the client went away (whatever RST code its library picked).
    if (deadlineAt !== undefined && performance.now() >= deadlineAt - DEADLINE_SLACK_MS) return "deadline";
    return "cancelled";
  }
  return "error";
}
