import { Code, ConnectError } from "@connectrpc/connect";
import { formatDuration } from "../shared/duration.js";

// The errors every road shares. Their one spelling in logs, metrics and JSON
// bodies ("invalid_argument") is connect-internals/codes.ts's codeName().

/** What every open stream ends with when the server stops, and what a new one gets while it stops. */
export const shutdownError = new ConnectError("server is shutting down", Code.Unavailable);

/**
 * What a stream gets when it has been open --max-stream-duration: UNAVAILABLE,
 * which the resuming clients (the client package's resumeStream(), EventSource) already
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

/**
 * What a stream that took nothing for --send-timeout ends with. Its peer
 * reads nothing, so it is for the log and the span: the connection is closed.
 */
export function sendTimeoutError(timeoutMs: number): ConnectError {
  return new ConnectError(`the client read nothing for ${formatDuration(timeoutMs)}`, Code.DeadlineExceeded);
}

/** What a client may read of an error: a bug's message (unknown, internal) stays in the log. */
export function clientMessage(error: ConnectError): string {
  return error.code === Code.Internal || error.code === Code.Unknown ? "internal error" : error.rawMessage;
}
