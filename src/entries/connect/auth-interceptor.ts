import type { Interceptor } from "@connectrpc/connect";
import { StreamService } from "../../../gen/stream/v1/stream_pb.js";
import type { GreetingStreams } from "../../core/stream-service.js";
import { authenticate, type BearerTokens } from "../kit/auth.js";
import { createCallInfo } from "../kit/call.js";
import { kConnection } from "./stream-routes.js";

// The bearer check for every RPC connect-node serves (Stream over Connect,
// gRPC-Web, and gRPC with --fast-path off; reflection), but the services left
// open (health, which probes and load balancers call without a token). An
// interceptor of a streaming method runs before the request message is read,
// as the lean path checks before it reads: a caller without a token gets
// UNAUTHENTICATED on both roads, whatever its body.

export interface AuthInterceptorOptions {
  tokens: BearerTokens;
  /** Told of a refused Stream call, to log and count it as the other roads do. */
  streams: GreetingStreams;
  /** Full names of the services anyone may call. */
  openServices: readonly string[];
}

export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  const open = new Set(options.openServices);
  return (next) => async (req) => {
    if (open.has(req.service.typeName)) return next(req);
    const denied = authenticate(options.tokens, { authorization: req.header.get("authorization") });
    if (denied === undefined) return next(req);
    if (req.service.typeName === StreamService.typeName) {
      const conn = req.contextValues.get(kConnection);
      const call = createCallInfo({
        socket: conn.socket,
        protocol: protocolOf(req.header.get("content-type")),
        httpVersion: conn.httpVersion,
        requestIdHeader: req.header.get("x-request-id"),
        traceparent: req.header.get("traceparent"),
        tracestate: req.header.get("tracestate"),
      });
      options.streams.refuse(call, "", denied.error);
    }
    throw denied.error;
  };
}

/** The protocol's name as connect's handler context reports it, from the content type it negotiated on. */
function protocolOf(contentType: string | null): string {
  if (contentType?.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
}
