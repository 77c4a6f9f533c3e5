import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamResponse } from "../../gen/stream/v1/stream_pb.js";
import { maxDurationError, shutdownError } from "./errors.js";
import { greetingText, planStream, type StreamParams, type StreamPlan } from "./greeting.js";
import { type GreetingSink, GreetingStream, type StreamOwner } from "./greeting-stream.js";
import { Pacer } from "./pacer.js";
import { TurnBudget } from "./turn-budget.js";

// The one stream implementation. Every road (the lean RPC path, connect-node,
// GET /stream) gets its streams here: validation, pacing, limits, fairness
// and the live-stream registry live here, so no road can skip them. A road
// either drives a GreetingStream with a sink of its own (start()), or pulls
// an async generator (open(), for connect-node); both are the same machine.
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
export type EndReason = "limit" | "cancelled" | "deadline" | "shutdown" | "max_duration" | "max_age" | "error";

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
  /** Streams open at once; past it a call fails with RESOURCE_EXHAUSTED. Default 50000. */
  maxStreams?: number;
  /**
   * A stream open this long ends with UNAVAILABLE (which resuming clients
   * retry from the next counter), reported as "max_duration". Default 0: never.
   */
  maxDurationMs?: number;
  /** How long all streams together may run in one turn of the event loop before yielding to I/O. Default 10. */
  turnSliceMs?: number;
  /** Told of every call, in this order. Default none. */
  observers?: readonly StreamObserver[];
}

export { type GreetingSink, GreetingStream };

export class GreetingStreams implements StreamOwner {
  readonly budget: TurnBudget;
  readonly pacer: Pacer;
  private readonly live = new Set<GreetingStream>();
  private readonly defaultIntervalMs: number;
  private readonly maxStreams: number;
  private readonly maxDurationMs: number;
  private readonly observers: readonly StreamObserver[];
  private stopping: ConnectError | undefined;
  /** Messages sent by every stream since start: a plain count, cheap enough for the hot loop. */
  messagesSent = 0;

  constructor(options: StreamServiceOptions = {}) {
    this.defaultIntervalMs = options.defaultIntervalMs ?? 2000;
    this.maxStreams = options.maxStreams ?? 50_000;
    this.maxDurationMs = options.maxDurationMs ?? 0;
    this.budget = new TurnBudget(options.turnSliceMs ?? 10);
    this.pacer = new Pacer(this.budget);
    this.observers = options.observers ?? [];
  }

  /** Streams open right now, on every road. */
  get liveCount(): number {
    return this.live.size;
  }

  /** Ends every open stream with `reason` (UNAVAILABLE "server is shutting down"), and refuses new ones. */
  stopAll(reason: ConnectError = shutdownError): void {
    this.stopping = reason;
    for (const s of [...this.live]) s.stop(reason);
  }

  /**
   * Ends the open streams whose call `match` picks with `error`, reported as
   * `reason`, and leaves new ones alone: the streams of one connection that
   * reached its maximum age. Returns how many it stopped.
   */
  stopWhere(match: (call: CallInfo) => boolean, error: ConnectError, reason: EndReason = "max_age"): number {
    let stopped = 0;
    for (const s of [...this.live]) {
      if (!match(s.call)) continue;
      s.stop(error, reason);
      stopped++;
    }
    return stopped;
  }

  /**
   * Reports a call a road refused before it could ask for its stream (a
   * malformed query string), so that it is logged and counted like the
   * refusals start() makes.
   */
  refuse(call: CallInfo, name: string, error: ConnectError): void {
    for (const o of this.observers) o.rejected?.(call, name, error);
  }

  /**
   * A stream for one call, writing into `sink` once begun. Throws a
   * ConnectError when the call is refused (bad input, too many streams,
   * shutting down): the road's status is still its own to choose then.
   */
  start(params: StreamParams, call: CallInfo, sink: GreetingSink): GreetingStream {
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
    const stream = new GreetingStream(this, plan, call, sink);
    this.live.add(stream);
    if (this.maxDurationMs > 0)
      stream.stopAfter(this.maxDurationMs, (next) => maxDurationError(this.maxDurationMs, next));
    for (const o of this.observers) o.opened?.(call, plan.name);
    return stream;
  }

  /**
   * The greetings for one call as an async generator, for connect-node.
   * Validates on the first next(); ends when `signal` aborts: with its
   * reason, or as DEADLINE_EXCEEDED when that is the reason.
   */
  async *open(params: StreamParams, call: CallInfo, signal: AbortSignal): AsyncGenerator<StreamResponse, void> {
    let message: StreamResponse | undefined;
    let ended = false;
    let endError: ConnectError | undefined;
    let wake: (() => void) | undefined;
    let name = "";
    // One message at a time: write() hands it over and says "wait" until the consumer pulls again.
    const stream = this.start(params, call, {
      write(counter, millis) {
        message = greetingMessage(name, counter, millis);
        wake?.();
        return false;
      },
      end(error) {
        ended = true;
        endError = error;
        wake?.();
      },
    });
    name = stream.name;
    const onAbort = () => {
      const reason = ConnectError.from(signal.reason);
      if (reason.code === Code.DeadlineExceeded) {
        stream.fail(reason);
        return;
      }
      // The client went away. Suspended at a yield, the generator runs again
      // only when its consumer pulls, and a consumer may never: connect-node
      // waits for 'drain' or 'error' after a write that filled the window, and
      // a reset HTTP/2 response emits neither. Free the stream now.
      stream.cancel(signal.reason);
      ended = true;
      endError = reason;
      wake?.();
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort);
    try {
      stream.begin();
      for (;;) {
        if (message === undefined && !ended) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
        if (message !== undefined) {
          const m = message;
          message = undefined;
          yield m;
          stream.resume();
          continue;
        }
        if (endError !== undefined) throw endError;
        return;
      }
    } catch (e) {
      // The consumer threw into us (a write failed), or the end we throw ourselves.
      stream.fail(ConnectError.from(e));
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
      // A consumer that stops pulling (client gone mid-write) ends us through return().
      stream.cancel(signal.aborted ? signal.reason : new ConnectError("the consumer stopped", Code.Canceled));
    }
  }

  /** StreamOwner: a stream ended. */
  ended(stream: GreetingStream, end: StreamEnd): void {
    this.live.delete(stream);
    for (const o of this.observers) o.ended?.(stream.call, stream.name, end);
  }

  /** StreamOwner: a message was sent. */
  counted(): void {
    this.messagesSent++;
  }
}

/** A greeting as the generated message type, for the roads that serialize with protobuf-es. */
export function greetingMessage(name: string, counter: bigint, millis: number): StreamResponse {
  return {
    $typeName: "stream.v1.StreamResponse",
    message: greetingText(name, counter),
    counter,
    timestamp: {
      $typeName: "google.protobuf.Timestamp",
      seconds: BigInt(Math.floor(millis / 1000)),
      nanos: (millis % 1000) * 1_000_000,
    },
  };
}
