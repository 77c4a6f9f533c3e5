import { randomUUID } from "node:crypto";
import type { CallInfo } from "../core/stream-service.js";
import { type PeerSocket, peerOf } from "../http/peer.js";

// Who is calling, made once at a request's birth, for every request: the
// peer's address, the client the per-client limits count, the connection it
// came on, the caller's request id when it is sane (else a fresh one), and
// the trace it belongs to. The road fills in the protocol once it knows it.

export interface CallInput {
  socket: PeerSocket;
  /** The HTTP/2 session or the HTTP/1.1 socket: streams belong to it by identity. */
  connection: object;
  /** The client's address for the per-client limits (client-address.ts). */
  client: string;
  httpVersion: string;
  /** The x-request-id request header, as sent. */
  requestIdHeader: string | undefined;
  /** The W3C traceparent and tracestate request headers, as sent. */
  traceparent: string | undefined;
  tracestate: string | undefined;
}

export function createCallInfo(input: CallInput): CallInfo {
  return {
    peer: peerOf(input.socket),
    client: input.client,
    connection: input.connection,
    protocol: "",
    httpVersion: input.httpVersion,
    requestId: requestIdFrom(input.requestIdHeader),
    deadlineAt: undefined,
    traceparent: input.traceparent,
    tracestate: input.tracestate,
    // Present from the start, so every CallInfo has one shape for V8.
    trace: undefined,
    span: undefined,
  };
}

const requestIdPattern = /^[\w.:-]{1,64}$/;

/** The caller's x-request-id when it is sane, else a fresh one: a header is never trusted into a log as is. */
function requestIdFrom(header: string | undefined): string {
  return header && requestIdPattern.test(header) ? header : randomUUID();
}
