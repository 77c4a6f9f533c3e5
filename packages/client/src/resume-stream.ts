import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, Code, ConnectError } from "@connectrpc/connect";
import { backoffDelay, sleep } from "./backoff.js";
import { type StreamRequest, StreamRequestSchema, type StreamResponse } from "./gen/stream/v1/stream_pb.js";

// One logical stream across broken connections and server restarts. On an
// error that the same request may survive, it waits (backoff with full
// jitter) and asks again with start_at = last counter + 1 and the limit that
// is left, so the reader sees every counter once, in order. Imports nothing
// Node-only: the web page and the Node CLI share it.

/** What the stream is asked: any init of stream.v1.StreamRequest. */
export type StreamRequestInit = MessageInitShape<typeof StreamRequestSchema>;

/** What resumeStream() calls for each attempt: the generated client (createStreamClient()) fits. */
export interface StreamCaller {
  stream(request: StreamRequest, options: CallOptions): AsyncIterable<StreamResponse>;
}

export type ResumeState = "connecting" | "streaming" | "reconnecting" | "done" | "stopped" | "error";

export interface ResumeStatus {
  state: ResumeState;
  /** The reconnection attempt, from 1, while reconnecting. */
  attempt?: number;
  /** The wait before that attempt, in ms, while reconnecting. */
  delayMs?: number;
  /** Why it reconnects, or why it gave up. */
  error?: ConnectError;
}

export interface ResumeOptions {
  /** Aborting it ends the iteration quietly (no error), as a `break` does. Default: none. */
  signal?: AbortSignal;
  /**
   * A deadline for the whole stream, across every reconnection, in ms: each
   * attempt is sent with the time that is left, and when it is gone the
   * iteration throws DEADLINE_EXCEEDED. Default: none.
   */
  timeoutMs?: number;
  /** Headers sent with every attempt (authorization, a traceparent). Default: none. */
  headers?: Record<string, string>;
  /** Told of every change of state. Default: none. */
  onStatus?: (status: ResumeStatus) => void;
  /** The cap of the first backoff, in ms. Default 250. */
  initialBackoffMs?: number;
  /** The largest backoff cap, in ms. Default 10000. */
  maxBackoffMs?: number;
  /** Failed attempts in a row (no message between them) before it gives up. Default Infinity. */
  maxAttempts?: number;
  /** For tests: returns a number in [0, 1). Default Math.random. */
  random?: () => number;
}

/**
 * Codes that say "the same request may work later": the server went away or
 * restarted (UNAVAILABLE), a proxy or a broken connection garbled the answer
 * (UNKNOWN, INTERNAL), the server shed load (RESOURCE_EXHAUSTED, ABORTED), or
 * a proxy timed out (DEADLINE_EXCEEDED that is not our own deadline). Anything
 * else (INVALID_ARGUMENT, UNAUTHENTICATED, UNIMPLEMENTED, ...) ends the stream
 * at once: asking again would get the same answer.
 */
const retryable = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.Aborted,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
]);

/** The start_at and limit that go on after `last`, having `received` of `limit` (0n: no limit). */
export function resumeRequest(
  startAt: bigint,
  limit: bigint,
  received: bigint,
  last: bigint | undefined,
): { startAt: bigint; limit: bigint } {
  const next = last === undefined ? startAt : last + 1n;
  return { startAt: next, limit: limit === 0n ? 0n : limit - received };
}

/**
 * The messages of one stream, resumed across failures. Ends when the server
 * ends the stream OK (its limit reached), when `signal` aborts or the loop
 * breaks (quietly), or throws the ConnectError that a retry cannot fix.
 *
 *     for await (const m of resumeStream(client, { name: "Ada" }, { signal })) show(m);
 */
export async function* resumeStream(
  client: StreamCaller,
  request: StreamRequestInit = {},
  options: ResumeOptions = {},
): AsyncGenerator<StreamResponse, void, undefined> {
  const first = create(StreamRequestSchema, request);
  const backoff = {
    initialMs: options.initialBackoffMs ?? 250,
    maxMs: options.maxBackoffMs ?? 10_000,
    random: options.random ?? Math.random,
  };
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const { signal, timeoutMs } = options;
  const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
  const status = options.onStatus ?? (() => {});
  let received = 0n;
  let last: bigint | undefined;
  let failures = 0;
  let ended = false;
  const fail = (error: ConnectError): ConnectError => {
    ended = true;
    status({ state: "error", error });
    return error;
  };

  const done = () => {
    ended = true;
    status({ state: "done" });
  };

  status({ state: "connecting" });
  try {
    for (;;) {
      if (signal?.aborted) return;
      const left = deadline === undefined ? undefined : Math.ceil(deadline - performance.now());
      if (left !== undefined && left <= 0) {
        throw fail(new ConnectError(`the stream's deadline of ${timeoutMs} ms passed`, Code.DeadlineExceeded));
      }
      const next: StreamRequest = { ...first, ...resumeRequest(first.startAt, first.limit, received, last) };
      // A controller per attempt: connect's stream iterable has no return(), so
      // a `break` in the caller's loop would leave the call open on the
      // server. Aborting it in `finally` ends the call however the loop ends.
      const attempt = new AbortController();
      const forward = () => attempt.abort(signal?.reason);
      signal?.addEventListener("abort", forward);
      const callOptions: CallOptions = {
        signal: attempt.signal,
        ...(left !== undefined ? { timeoutMs: left } : {}),
        ...(options.headers !== undefined ? { headers: options.headers } : {}),
      };
      let wait = 0;
      try {
        let streaming = false;
        for await (const message of client.stream(next, callOptions)) {
          if (!streaming) {
            streaming = true;
            failures = 0;
            status({ state: "streaming" });
          }
          // A server that went back in time (or a proxy that replays) must not show a duplicate.
          if (last !== undefined && message.counter <= last) continue;
          last = message.counter;
          received++;
          yield message;
        }
        return done();
      } catch (e) {
        if (signal?.aborted) return;
        // Every message came but the end did not (the connection broke right after the last):
        // asking again would ask for "0 left", which the protocol reads as "no limit".
        if (first.limit !== 0n && received >= first.limit) return done();
        const error = ConnectError.from(e);
        failures++;
        // With a deadline of ours on the call, DEADLINE_EXCEEDED is ours: the time is up.
        const ours = left !== undefined && error.code === Code.DeadlineExceeded;
        if (ours || !retryable.has(error.code) || failures >= maxAttempts) throw fail(error);
        const delayMs = backoffDelay(failures, backoff);
        status({ state: "reconnecting", attempt: failures, delayMs, error });
        wait = deadline === undefined ? delayMs : Math.min(delayMs, Math.max(0, deadline - performance.now()));
      } finally {
        signal?.removeEventListener("abort", forward);
        attempt.abort();
      }
      await sleep(wait, signal);
    }
  } finally {
    if (!ended) status({ state: "stopped" });
  }
}
