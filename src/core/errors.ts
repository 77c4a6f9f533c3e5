import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { formatDuration } from "../shared/duration.js";

// The errors every road shares, and the one spelling of a code that logs,
// metrics and JSON bodies use: the wire's ("invalid_argument"), as the
// Connect protocol and gRPC's documentation write it.

/** What every open stream ends with when the server stops, and what a new one gets while it stops. */
export const shutdownError = new ConnectError("server is shutting down", Code.Unavailable);

/**
 * What a stream gets when it has been open --max-stream-duration: UNAVAILABLE,
 * which the resuming clients (src/client/resume.ts, EventSource) already
 * retry, with what a hand-made client needs to go on. No ":" or ";" in it:
 * grpc-js would show them percent-encoded.
 */
export function maxDurationError(maxMs: number, next: bigint): ConnectError {
  return new ConnectError(
    `stream reached the server's maximum duration of ${formatDuration(maxMs)} (resume with start_at ${next})`,
    Code.Unavailable,
  );
}

export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** "invalid_argument", "resource_exhausted", ...: the Connect protocol's name of a code. */
export function codeName(code: Code): string {
  return codeToString(code);
}

/** What a client may read of an error: a bug's message (unknown, internal) stays in the log. */
export function clientMessage(error: ConnectError): string {
  return error.code === Code.Internal || error.code === Code.Unknown ? "internal error" : error.rawMessage;
}
