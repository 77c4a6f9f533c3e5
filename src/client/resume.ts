import type { Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamResponse } from "../../gen/stream/v1/stream_pb.js";

// Keeps one logical stream going across broken connections and server
// restarts: on a retryable error it waits (exponential backoff with full
// jitter) and asks again with start_at = last counter + 1 and the limit that
// is left, so the reader sees no gap and no duplicate. Shared by the Node CLI
// and the web page, so it imports nothing Node-only.

/** What a call needs: the generated client's stream() fits. */
export type OpenStream = (
  request: { name: string; interval?: Duration; limit: bigint; startAt: bigint },
  options: { signal: AbortSignal },
) => AsyncIterable<StreamResponse>;

export type ResumeState = "connecting" | "streaming" | "reconnecting" | "done" | "stopped" | "error";

export interface ResumeStatus {
  state: ResumeState;
  /** Reconnection attempt, from 1, while reconnecting. */
  attempt?: number;
  /** The wait before the next attempt, while reconnecting. */
  delayMs?: number;
  /** Why we reconnect, or why we gave up. */
  error?: ConnectError;
}

export interface ResumeOptions {
  name: string;
  interval?: Duration;
  /** Messages to receive in all, over every reconnection. 0n or unset: no limit. */
  limit?: bigint;
  /** Counter of the first message. Default 0n. */
  startAt?: bigint;
  open: OpenStream;
  onMessage: (message: StreamResponse) => void;
  onStatus?: (status: ResumeStatus) => void;
  /** Ends the stream cleanly; streamWithResume() then resolves "stopped". */
  signal?: AbortSignal;
  /** First backoff cap in ms. Default 250. */
  initialBackoffMs?: number;
  /** Largest backoff cap in ms. Default 10000. */
  maxBackoffMs?: number;
  /** Gives up after this many failed attempts in a row. Default Infinity. */
  maxAttempts?: number;
  /** For tests: returns [0, 1). Default Math.random. */
  random?: () => number;
}

/** Codes that say "the same request may work later"; anything else ends the stream at once. */
const retryable = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.Aborted,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
]);

function isRetryable(error: ConnectError): boolean {
  return retryable.has(error.code);
}

/** The request that goes on after `last`, with what is left of `limit` (0n: none). */
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
 * Streams until the server ends the stream with OK (limit reached), the
 * signal aborts ("stopped"), or an error a retry cannot fix (thrown as a
 * ConnectError).
 */
export async function streamWithResume(options: ResumeOptions): Promise<"done" | "stopped"> {
  const limit = options.limit ?? 0n;
  const startAt = options.startAt ?? 0n;
  const initial = options.initialBackoffMs ?? 250;
  const max = options.maxBackoffMs ?? 10_000;
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const random = options.random ?? Math.random;
  const signal = options.signal ?? new AbortController().signal;
  const status = options.onStatus ?? (() => {});
  let received = 0n;
  let last: bigint | undefined;
  let failures = 0;
  status({ state: "connecting" });
  for (;;) {
    if (signal.aborted) return stopped(status);
    const next = resumeRequest(startAt, limit, received, last);
    try {
      let first = true;
      const request = { name: options.name, limit: next.limit, startAt: next.startAt };
      const stream = options.open(options.interval ? { ...request, interval: options.interval } : request, { signal });
      for await (const message of stream) {
        if (first) {
          first = false;
          failures = 0;
          status({ state: "streaming" });
        }
        // A server that went back in time (or a proxy replay) must not show a duplicate.
        if (last !== undefined && message.counter <= last) continue;
        last = message.counter;
        received++;
        options.onMessage(message);
      }
      status({ state: "done" });
      return "done";
    } catch (e) {
      if (signal.aborted) return stopped(status);
      const error = ConnectError.from(e);
      failures++;
      if (!isRetryable(error) || failures >= maxAttempts) {
        status({ state: "error", error });
        throw error;
      }
      const cap = Math.min(max, initial * 2 ** (failures - 1));
      const delayMs = Math.round(random() * cap);
      status({ state: "reconnecting", attempt: failures, delayMs, error });
      await sleep(delayMs, signal);
    }
  }
}

function stopped(status: (s: ResumeStatus) => void): "stopped" {
  status({ state: "stopped" });
  return "stopped";
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
