import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { createContextKey, createContextValues } from "@connectrpc/connect";
import { StreamService } from "../../../gen/stream/v1/stream_pb.js";
import type { CallInfo, GreetingStreams } from "../../core/stream-service.js";
import { createCallInfo } from "../kit/call.js";

// The connect-node road: every RPC the lean path does not take (Connect and
// gRPC-Web on either HTTP version, gRPC with --fast-path off). connect-node
// does the protocol work; the handler hands the request to the one stream
// implementation and returns its generator, which connect-node pulls.

export const kConnection = createContextKey<{ socket: CallSocket; httpVersion: string }>(
  { socket: undefined, httpVersion: "" },
  { description: "the connection a call arrived on" },
);

export type CallSocket = { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined;

/** Passed to connectNodeAdapter: what the handler needs of the Node request. */
export function contextValues(req: http.IncomingMessage | http2.Http2ServerRequest) {
  return createContextValues().set(kConnection, { socket: req.socket, httpVersion: req.httpVersion });
}

export function createStreamRoutes(streams: GreetingStreams) {
  return (router: ConnectRouter) =>
    router.service(StreamService, {
      stream(req, ctx) {
        const call = callInfo(ctx);
        ctx.responseHeader.set("x-request-id", call.requestId);
        return streams.open(req, call, ctx.signal);
      },
    });
}

function callInfo(ctx: HandlerContext): CallInfo {
  const conn = ctx.values.get(kConnection);
  return createCallInfo({
    socket: conn.socket,
    protocol: ctx.protocolName,
    httpVersion: conn.httpVersion,
    requestIdHeader: ctx.requestHeader.get("x-request-id"),
    timeoutMs: ctx.timeoutMs(),
    traceparent: ctx.requestHeader.get("traceparent"),
    tracestate: ctx.requestHeader.get("tracestate"),
  });
}
