import * as http2 from "node:http2";
import {
  type ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { StreamService } from "../../../gen/stream/v1/stream_pb.js";
import {
  connectTimeout,
  contentTypesTaken,
  grpcTimeout,
  streamPath,
  takesContentType,
} from "../../connect-internals/protocol.js";
import type { GreetingStreams } from "../../core/stream-service.js";
import type { Exchange, NodeRequest } from "../../http/exchange.js";
import { sendJsonError } from "../../http/exchange.js";
import { resetStream } from "../../http/h2.js";
import type { Road, Route } from "../../http/road.js";
import { connectEnvelopeProblem } from "../kit/envelope-check.js";
import { openStream } from "./stream-generator.js";

// connect-node's road: every RPC the lean road does not take (health,
// reflection, and Stream when the lean road declines it: compressed
// requests, Expect, gRPC-Web text, every call with --fast-path off).
// connect-node does the protocol work. The front door has already checked
// the token and read the deadline; a refusal it made is thrown by an
// interceptor, so that connect-node answers it in the call's own protocol.

export interface ConnectRoadOptions {
  streams: GreetingStreams;
  /** The other services on the router (health, reflection). */
  routes: ReadonlyArray<(router: ConnectRouter) => void>;
  /** Full names of the services anyone may call, token or not (health: probes and balancers call it). */
  openServices: readonly string[];
  /** connect-node's readMaxBytes. */
  readMaxBytes: number;
}

const kExchange = createContextKey<Exchange | undefined>(undefined, { description: "the front door's exchange" });
const kRefusal = createContextKey<ConnectError | undefined>(undefined, { description: "the front door's refusal" });

/** Throws the front door's refusal where connect-node answers it: after its own checks of the request. */
const refusals: Interceptor = (next) => async (req) => {
  const refusal = req.contextValues.get(kRefusal);
  if (refusal !== undefined) throw refusal;
  return next(req);
};

export function createConnectRoad(options: ConnectRoadOptions): Road {
  const { streams } = options;
  const exchanges = new WeakMap<NodeRequest, { x: Exchange; refusal: ConnectError | undefined }>();
  const routes = (router: ConnectRouter) => {
    router.service(StreamService, {
      stream(req, ctx) {
        const x = ctx.values.get(kExchange) as Exchange;
        return openStream(streams, req, x.call, ctx.signal, () => abort(x));
      },
    });
    for (const r of options.routes) r(router);
  };
  const adapter = connectNodeAdapter({
    routes,
    contextValues: (req) => {
      const entry = exchanges.get(req);
      return createContextValues().set(kExchange, entry?.x).set(kRefusal, entry?.refusal);
    },
    interceptors: [refusals],
    readMaxBytes: options.readMaxBytes,
    // Only paths the router serves come here (route() below); anything else has a road of its own.
    fallback: (_req, res) => sendJsonError(res, 404, "unimplemented", "no such RPC"),
  });
  const run = (x: Exchange, refusal: ConnectError | undefined) => {
    const t = x.transport;
    if (t.kind !== "node") throw new Error("connect-node's road needs Node's request and response");
    exchanges.set(t.req, { x, refusal });
    adapter(t.req, t.res);
  };
  /** A Connect streaming body's first byte is looked at before connect-node reads it (kit/envelope-check.ts). */
  const serveStream = (x: Exchange) => {
    const t = x.transport;
    if (t.kind !== "node" || !x.head.hasBody) return run(x, undefined);
    peekFirstByte(t.req, (first) => {
      const problem = connectEnvelopeProblem(first);
      if (problem !== undefined) streams.refuse(x.call, {}, problem);
      run(x, problem);
    });
  };
  const { paths, streamingPaths } = servicePaths(routes);
  const open = new Set(options.openServices);
  const routeFor = (path: string, protocol: string): Route => {
    const streaming = streamingPaths.has(path);
    const serve = path === streamPath && protocol === "connect" ? serveStream : (x: Exchange) => run(x, undefined);
    return {
      auth: open.has(path.split("/")[1] ?? "") ? "open" : "bearer",
      timeout: protocol === "connect" ? connectTimeout : grpcTimeout,
      stream: path === streamPath,
      raw: false,
      protocol: () => protocol,
      serve: (x) => (contentTypeOk(x, streaming) ? serve(x) : unsupportedMediaType(x, streaming)),
      refuse: (x, error) => run(x, error),
    };
  };
  // One route per path and timeout header, made once.
  const made = new Map<string, Route>();
  return {
    name: "connect-node",
    route(head) {
      if (!paths.has(head.path)) return undefined;
      const protocol = protocolOf(head.contentType);
      const key = `${protocol} ${head.path}`;
      let route = made.get(key);
      if (route === undefined) {
        route = routeFor(head.path, protocol);
        made.set(key, route);
      }
      return route;
    },
  };
}

/** Calls `then` with the body's first byte (undefined for an empty body), and leaves the body to be read as it was. */
function peekFirstByte(req: NodeRequest, then: (first: number | undefined) => void): void {
  const done = (first: number | undefined) => {
    req.off("data", onData);
    req.off("end", onEnd);
    then(first);
  };
  const onData = (chunk: Buffer) => {
    req.pause();
    req.unshift(chunk);
    done(chunk[0]);
  };
  const onEnd = () => done(undefined);
  req.on("data", onData);
  req.once("end", onEnd);
}

/** The protocol connect-node will speak to this content type, as its handler context names it. */
function protocolOf(contentType: string | undefined): string {
  if (contentType?.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/** The request paths a router with these services serves ("/grpc.health.v1.Health/Check", ...), and those of streams. */
function servicePaths(routes: (router: ConnectRouter) => void): { paths: Set<string>; streamingPaths: Set<string> } {
  const router = createConnectRouter();
  routes(router);
  return {
    paths: new Set(router.handlers.map((h) => h.requestPath)),
    streamingPaths: new Set(router.handlers.filter((h) => h.method.methodKind !== "unary").map((h) => h.requestPath)),
  };
}

/** A POST's content type is one the method's protocols speak; anything else (a GET, an OPTIONS) is connect-node's to answer. */
function contentTypeOk(x: Exchange, streaming: boolean): boolean {
  return x.head.method !== "POST" || takesContentType(x.head.contentType, streaming);
}

/** connect-node answers an unknown content type with an empty 415; this one names what the method takes. */
function unsupportedMediaType(x: Exchange, streaming: boolean): void {
  const t = x.transport;
  if (t.kind !== "node") return;
  const taken = contentTypesTaken(streaming);
  const sent =
    x.head.contentType === undefined
      ? "no content type"
      : `content type ${JSON.stringify(x.head.contentType.slice(0, 64))}`;
  sendJsonError(t.res, 415, "invalid_argument", `this method takes ${taken.join(", ")}, not ${sent}`, {
    "accept-post": taken.join(", "),
  });
}

/** The peer took nothing for --send-timeout: its stream (HTTP/2) or its connection (HTTP/1.1) goes. */
function abort(x: Exchange): boolean {
  const t = x.transport;
  if (t.kind !== "node") return false;
  if ("stream" in t.req) return resetStream(t.req.stream, http2.constants.NGHTTP2_CANCEL);
  t.res.destroy();
  return true;
}
