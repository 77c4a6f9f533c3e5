import type { Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument as invalid } from "./errors.js";

// Pure rules of the greeting stream: defaults, validation and the counter
// arithmetic that lets a client resume. No transport, no clock.

export const ANONYMOUS = "Anonymous";
export const MAX_NAME_LENGTH = 100;
export const MAX_INTERVAL_MS = 3_600_000;
export const MAX_COUNTER = 2n ** 64n - 1n;

/** A validated request: what one stream will send, and how fast. */
export interface StreamPlan {
  readonly name: string;
  /** Pause between two messages in milliseconds; 0 sends as fast as the client reads. */
  readonly intervalMs: number;
  /** Counter of the first message. */
  readonly first: bigint;
  /** Counter of the last message, inclusive: the stream ends OK after it. */
  readonly last: bigint;
}

/** The fields of a StreamRequest, as the RPC and the plain HTTP route both carry them. */
export interface StreamParams {
  name: string;
  interval?: Duration | undefined;
  limit: bigint;
  startAt: bigint;
}

// Error messages avoid ":", ",", "+" and the like: gRPC percent-encodes them
// in grpc-message, and @grpc/grpc-js decodes with decodeURI, which leaves
// them encoded ("name%3A ..."). Plain words read right in every client.

// C0, DEL and C1 controls, plus the Unicode line and paragraph separators that
// split log lines just as well as "\n" does.
const forbiddenInName = /[\p{Cc}\u2028\u2029]/u;

/**
 * The greeting around its counter, split where the counter goes: the one
 * place the text is written. greetingText() joins it; the wire encoders
 * (entries/kit/greeting-wire.ts) encode the two halves once per stream.
 */
export function greetingParts(name: string): readonly [before: string, after: string] {
  return [`Hello ${name}, this is `, " time stream message."];
}

export function greetingText(name: string, counter: bigint): string {
  const [before, after] = greetingParts(name);
  return `${before}${counter}${after}`;
}

export function planStream(params: StreamParams, defaultIntervalMs: number): StreamPlan {
  return {
    name: checkName(params.name),
    intervalMs: params.interval === undefined ? defaultIntervalMs : checkInterval(params.interval),
    first: params.startAt,
    last: lastCounter(params.startAt, params.limit),
  };
}

function checkName(name: string): string {
  if (name === "") {
    return ANONYMOUS;
  }
  // Length in code points, so that an emoji counts as one character, as a user expects.
  let length = 0;
  for (const _ of name) {
    length++;
  }
  if (length > MAX_NAME_LENGTH) {
    throw invalid(`name must be at most ${MAX_NAME_LENGTH} characters (got ${length})`);
  }
  if (forbiddenInName.test(name)) {
    throw invalid("name must not contain control characters");
  }
  return name;
}

function checkInterval(interval: Duration): number {
  const { seconds, nanos } = interval;
  const mixedSigns = (seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0);
  if (nanos <= -1e9 || nanos >= 1e9 || mixedSigns) {
    throw invalid("interval is not a valid duration");
  }
  const ms = Number(seconds) * 1000 + nanos / 1e6;
  if (ms < 0 || ms > MAX_INTERVAL_MS) {
    throw invalid("interval must be between 0s and 1h (3600s)");
  }
  return ms;
}

function lastCounter(startAt: bigint, limit: bigint): bigint {
  if (limit === 0n) {
    return MAX_COUNTER;
  }
  const last = startAt + limit - 1n;
  if (last > MAX_COUNTER) {
    throw invalid(`start_at plus limit would pass the largest counter (${MAX_COUNTER})`);
  }
  return last;
}
