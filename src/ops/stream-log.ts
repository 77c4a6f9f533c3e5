import { codeName } from "../connect-internals/codes.js";
import type { Asked, CallInfo, StreamEnd, StreamObserver } from "../core/stream-service.js";
import type { Logger } from "./log.js";

// The lines every stream leaves, whatever road it took: one when it starts,
// one when it ends (with why, how many messages, how long), or one when it
// is refused, with what the client asked for as far as it could be read.
// What the Python server this descends from logged on connect and
// disconnect, with the request id that ties them together, and the trace and
// span ids that tie them to the call's trace. Each line carries the time it
// happened, though it is written a moment later, after the stream's messages.

export function createStreamLog(logger: Logger): StreamObserver {
  return {
    rejected(call: CallInfo, asked: Asked, error, at) {
      logger.info(
        "stream rejected",
        {
          ...fields(call),
          name: asked.name,
          interval: asked.interval,
          limit: asked.limit,
          start_at: asked.startAt,
          code: codeName(error.code),
          error: error.rawMessage,
        },
        at,
      );
    },
    opened(call, name, at) {
      logger.info("stream started", { ...fields(call), name }, at);
    },
    ended(call: CallInfo, name: string, end: StreamEnd, at) {
      const error = end.reason === "error" ? end.error : undefined;
      logger.info(
        "stream ended",
        {
          ...fields(call),
          name,
          reason: end.reason,
          code: error === undefined ? undefined : codeName(error.code),
          error: end.reason === "send_timeout" ? end.error?.rawMessage : error?.rawMessage,
          sent: end.sent,
          duration_ms: end.durationMs,
        },
        at,
      );
    },
  };
}

function fields(call: CallInfo) {
  return {
    id: call.requestId,
    peer: call.peer,
    protocol: call.protocol,
    http: call.httpVersion,
    // Set when the tracing observer, which runs first, gave the call a span.
    trace_id: call.trace?.traceId,
    span_id: call.trace?.spanId,
  };
}
