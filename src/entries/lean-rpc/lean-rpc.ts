import type { ConnectError } from "@connectrpc/connect";
import {
  createRequestParser,
  headerConnectEncoding,
  headerGrpcEncoding,
  streamPath,
} from "../../connect-internals/protocol.js";
import type { GreetingStreams } from "../../core/stream-service.js";
import type { Exchange, RequestHead } from "../../http/exchange.js";
import { resetStream } from "../../http/h2.js";
import type { Road, Route } from "../../http/road.js";
import type { Logger } from "../../ops/log.js";
import { readStreamRequest } from "../kit/request-wire.js";
import { protocolOf, type RpcProtocol, rpcProtocols } from "./protocols.js";
import { type EngineContext, LeanCall } from "./serve-rpc.js";

// The lean RPC road: Stream over gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1
// and HTTP/2), served by one engine instead of connect-node's pipeline, at
// the cost of a gRPC call whatever the protocol. It takes only what it fully
// understands; everything else (other methods, compressed requests, Expect,
// a query string, unknown content types) goes on to connect-node's road, as
// does everything with --fast-path off but gRPC-Web's text mode, which
// connect-node does not speak (it answers 415).

export interface LeanRpcOptions {
  streams: GreetingStreams;
  /** connect-node's readMaxBytes: the largest request message; larger gets RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  logger: Logger;
  /**
   * Only what connect-node does not speak (gRPC-Web text): --fast-path off,
   * where everything else goes through connect-node. Default false: every protocol.
   */
  onlyWhatConnectLacks?: boolean;
}

export function createLeanRpcRoad(options: LeanRpcOptions): Road {
  const json = createRequestParser(options.readMaxBytes, false);
  const binary = createRequestParser(options.readMaxBytes, true);
  // The plain form read by hand, anything else as connect reads it.
  const parsers = [json, (data: Buffer) => readStreamRequest(data) ?? binary(data)];
  const ctx: EngineContext = {
    streams: options.streams,
    readMaxBytes: options.readMaxBytes,
    parse: (binary) => parsers[binary ? 1 : 0] as (typeof parsers)[0],
  };
  const failed = (x: Exchange, e: unknown) => {
    options.logger.error("lean rpc failed", { error: e instanceof Error ? e.message : String(e) });
    const t = x.transport;
    if (t.kind === "node") t.res.destroy();
    else resetStream(t.stream, 0x2); // INTERNAL_ERROR
  };
  // One route per protocol, made once: a request costs a lookup, not an allocation.
  const routes = new Map<RpcProtocol, Route>();
  for (const protocol of rpcProtocols) {
    routes.set(protocol, {
      auth: "bearer",
      timeout: protocol.timeout,
      stream: true,
      raw: true,
      protocol: () => protocol.name,
      serve: (x) => void new LeanCall(ctx, x, protocol).serve().catch((e: unknown) => failed(x, e)),
      refuse: (x: Exchange, error: ConnectError) => new LeanCall(ctx, x, protocol).end(error),
    });
  }
  return {
    name: "lean RPC",
    route(head: RequestHead) {
      if (head.method !== "POST" || head.target !== streamPath || head.headers.expect !== undefined) return undefined;
      const protocol = protocolOf(head.contentType, head.version === "2.0");
      if (protocol === undefined || !uncompressed(head)) return undefined;
      if (options.onlyWhatConnectLacks === true && !protocol.text) return undefined;
      return routes.get(protocol);
    },
  };
}

/** What connect-node would have to decompress stays with connect-node. */
function uncompressed(head: RequestHead): boolean {
  for (const name of [headerGrpcEncoding, headerConnectEncoding]) {
    const value = head.headers[name];
    if (value !== undefined && value !== "identity") return false;
  }
  return true;
}
