import type * as http from "node:http";
import type { GreetingStreams } from "../../core/stream-service.js";
import type { CorsPolicy } from "../../http/cors.js";
import type { StreamTaker } from "../../http/h2.js";
import { validAuthority } from "../../http/request-guard.js";
import type { Logger } from "../../ops/log.js";
import type { BearerTokens } from "../kit/auth.js";
import {
  createRequestParser,
  defaultMaxTimeoutMs,
  headerConnectEncoding,
  headerGrpcEncoding,
  streamPath,
} from "./connect-internals.js";
import { protocolOf } from "./protocols.js";
import { type EngineContext, h1Exchange, h2Exchange, serveRpc } from "./serve-rpc.js";

// The lean RPC road: Stream over gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1
// and HTTP/2), served by one engine instead of connect-node's pipeline, at
// the cost of a gRPC call whatever the protocol. It takes only what it fully
// understands; everything else (other methods, compressed requests, Expect,
// gRPC-Web text, unknown content types) stays with connect-node, as does
// everything with --fast-path off.

export interface LeanRpcOptions {
  streams: GreetingStreams;
  /** connect-node's readMaxBytes: the largest request message; larger gets RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  /** connect's maxTimeoutMs: a larger timeout is INVALID_ARGUMENT. Default: connect's, no limit. */
  maxTimeoutMs?: number;
  /** The port's CORS policy, for browsers (their requests carry an Origin). Default none. */
  cors?: CorsPolicy;
  /** With tokens, a call needs one in its Authorization header, else UNAUTHENTICATED. Default none: open. */
  tokens?: BearerTokens | undefined;
  logger: Logger;
}

export interface LeanRpc {
  /** For HTTP/2 streams, before Node's compat layer: true when the lean road took the stream. */
  takeStream: StreamTaker;
  /** For HTTP/1.1 requests, before connect-node: true when the lean road took the request. */
  takeRequest(req: http.IncomingMessage, res: http.ServerResponse): boolean;
}

export function createLeanRpc(options: LeanRpcOptions): LeanRpc {
  const parsers = [createRequestParser(options.readMaxBytes, false), createRequestParser(options.readMaxBytes, true)];
  const ctx: EngineContext = {
    streams: options.streams,
    readMaxBytes: options.readMaxBytes,
    maxTimeoutMs: options.maxTimeoutMs ?? defaultMaxTimeoutMs,
    parse: (binary) => parsers[binary ? 1 : 0] as (typeof parsers)[0],
    corsHeaders: (origin) => options.cors?.responseHeaders(origin) ?? {},
    tokens: options.tokens,
  };
  const failed = (e: unknown) =>
    options.logger.error("lean rpc failed", { error: e instanceof Error ? e.message : String(e) });
  return {
    takeStream(stream, headers) {
      if (headers[":method"] !== "POST" || headers[":path"] !== streamPath || !identity(headers)) return false;
      const protocol = protocolOf(single(headers["content-type"]), true);
      if (protocol === undefined || headers.expect !== undefined) return false;
      serveRpc(ctx, h2Exchange(stream, headers), protocol).catch((e: unknown) => {
        failed(e);
        if (!stream.destroyed) stream.close(0x2); // INTERNAL_ERROR
      });
      return true;
    },
    takeRequest(req, res) {
      if (req.method !== "POST" || req.url !== streamPath || !identity(req.headers)) return false;
      const protocol = protocolOf(single(req.headers["content-type"]), false);
      if (protocol === undefined || req.headers.expect !== undefined) return false;
      serveRpc(ctx, h1Exchange(req, res), protocol).catch((e: unknown) => {
        failed(e);
        res.destroy();
      });
      return true;
    },
  };
}

/**
 * An uncompressed request with a sane authority: what connect-node would have
 * to decompress stays with connect-node, and so does an authority it would
 * refuse, so that both roads answer it alike (400).
 */
function identity(headers: http.IncomingHttpHeaders): boolean {
  const authority = headers[":authority"] ?? headers.host;
  if (typeof authority !== "string" || !validAuthority(authority)) return false;
  for (const name of [headerGrpcEncoding, headerConnectEncoding]) {
    const value = headers[name];
    if (value !== undefined && value !== "identity") return false;
  }
  return true;
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
