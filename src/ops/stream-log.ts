import { codeName } from "../core/errors.js";
import type { CallInfo, StreamEnd, StreamObserver } from "../core/stream-service.js";
import type { Logger } from "./log.js";

// The lines every stream leaves, whatever road it took: one when it starts,
// one when it ends (with why, how many messages, how long), or one when it
// is refused. What the Python server this descends from logged on connect and
// disconnect, with the request id that ties them together, and the trace and
// span ids that tie them to the call's trace.

export function createStreamLog(logger: Logger): StreamObserver {
  return {
    rejected(call, name, error) {
      logger.info("stream rejected", {
        ...fields(call),
        name,
        code: codeName(error.code),
        error: error.rawMessage,
      });
    },
    opened(call, name) {
      logger.info("stream started", { ...fields(call), name });
    },
    ended(call: CallInfo, name: string, end: StreamEnd) {
      const error = end.reason === "error" ? end.error : undefined;
      logger.info("stream ended", {
        ...fields(call),
        name,
        reason: end.reason,
        code: error === undefined ? undefined : codeName(error.code),
        error: error?.rawMessage,
        sent: end.sent,
        duration_ms: end.durationMs,
      });
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
