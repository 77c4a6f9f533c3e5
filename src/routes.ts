import { randomUUID } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { createContextKey, createContextValues } from "@connectrpc/connect";
import { StreamService as StreamServiceDesc } from "../gen/stream/v1/stream_pb.js";
import type { CallInfo, StreamService } from "./stream-service.js";

// The RPC surface: connect-node does the protocol work, the handler hands the
// request to the one stream implementation.

const kConnection = createContextKey<{ peer: string; httpVersion: string }>(
  { peer: "", httpVersion: "" },
  { description: "the connection a call arrived on" },
);

/** Passed to connectNodeAdapter: what the handler needs of the Node request. */
export function contextValues(req: http.IncomingMessage | http2.Http2ServerRequest) {
  return createContextValues().set(kConnection, {
    peer: peerOf(req.socket),
    httpVersion: req.httpVersion,
  });
}

export function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  const addr = socket.remoteAddress ?? "unknown";
  return addr.includes(":") ? `[${addr}]:${socket.remotePort}` : `${addr}:${socket.remotePort}`;
}

const requestIdPattern = /^[\w.:-]{1,64}$/;

/** The caller's x-request-id when it is sane, else a fresh one. */
export function requestIdFrom(header: string | null | undefined): string {
  return header && requestIdPattern.test(header) ? header : randomUUID();
}

export function createRoutes(streams: StreamService) {
  return (router: ConnectRouter) =>
    router.service(StreamServiceDesc, {
      stream(req, ctx) {
        const call = callInfo(ctx);
        ctx.responseHeader.set("x-request-id", call.requestId);
        return streams.open(req, call, ctx.signal);
      },
    });
}

function callInfo(ctx: HandlerContext): CallInfo {
  const conn = ctx.values.get(kConnection);
  const timeoutMs = ctx.timeoutMs();
  return {
    deadlineAt: timeoutMs === undefined ? undefined : performance.now() + timeoutMs,
    peer: conn.peer,
    protocol: ctx.protocolName,
    httpVersion: conn.httpVersion,
    requestId: requestIdFrom(ctx.requestHeader.get("x-request-id")),
  };
}
