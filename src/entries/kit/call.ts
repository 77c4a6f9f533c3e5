import { randomUUID } from "node:crypto";
import type { CallInfo } from "../../core/stream-service.js";

// Who is calling, built the same way on every road: the peer's address, the
// caller's request id when it is sane (else a fresh one), when its deadline
// passes, and the trace it belongs to.

export interface CallInput {
  socket: { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined;
  protocol: string;
  httpVersion: string;
  /** The x-request-id request header, as sent. */
  requestIdHeader: string | null | undefined;
  /** The deadline the protocol carried (grpc-timeout, connect-timeout-ms), from now. */
  timeoutMs?: number | undefined;
  /** The W3C traceparent and tracestate request headers, as sent. */
  traceparent: string | null | undefined;
  tracestate: string | null | undefined;
}

export function createCallInfo(input: CallInput): CallInfo {
  return {
    peer: peerOf(input.socket),
    protocol: input.protocol,
    httpVersion: input.httpVersion,
    requestId: requestIdFrom(input.requestIdHeader),
    deadlineAt: input.timeoutMs === undefined ? undefined : performance.now() + input.timeoutMs,
    traceparent: input.traceparent ?? undefined,
    tracestate: input.tracestate ?? undefined,
    // Present from the start, so every CallInfo has one shape for V8.
    trace: undefined,
    span: undefined,
  };
}

/** "10.0.0.7:51234", "[::1]:51234": CallInfo.peer, which also names the connection a call came on. */
export function peerOf(socket: CallInput["socket"]): string {
  const addr = socket?.remoteAddress ?? "unknown";
  return addr.includes(":") ? `[${addr}]:${socket?.remotePort}` : `${addr}:${socket?.remotePort}`;
}

const requestIdPattern = /^[\w.:-]{1,64}$/;

/** The caller's x-request-id when it is sane, else a fresh one: a header is never trusted into a log as is. */
function requestIdFrom(header: string | null | undefined): string {
  return header && requestIdPattern.test(header) ? header : randomUUID();
}
