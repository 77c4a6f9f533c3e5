import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { ConnectError } from "@connectrpc/connect";
import type { GreetingStreams } from "../core/stream-service.js";
import {
  answerJson,
  answerStarted,
  type Exchange,
  type HttpVersion,
  type NodeRequest,
  type NodeResponse,
  type RequestHead,
  type Transport,
} from "../http/exchange.js";
import type { Road, Route } from "../http/road.js";
import type { Logger } from "../ops/log.js";
import { createCallInfo } from "./call-record.js";
import type { ClientAddresses } from "./client-address.js";
import type { Policy } from "./policies.js";

// Every request comes in here, on either HTTP version, and is handled the
// same way: born (its emitters' errors handled, its call record made),
// classified once (the first road whose route() takes it), passed through
// the policies in order, then served by its road. HTTP/2 streams arrive
// raw, before Node's compatibility layer; a road that wants Node's request
// and response gets a stream through that layer, which hands it back here.

export interface IntakeOptions {
  /** In the order they are asked: the first road whose route() takes a request serves it. */
  roads: readonly Road[];
  /** In the order they run. */
  policies: readonly Policy[];
  streams: GreetingStreams;
  clients: ClientAddresses;
  logger: Logger;
}

export interface Intake {
  /** Node's 'request' listener: HTTP/1.1, and HTTP/2 streams back from the compatibility layer. */
  readonly request: (req: NodeRequest, res: NodeResponse) => void;
  /**
   * Node's 'stream' listener, in front of the compatibility layer:
   * `toCompat` hands the stream to it, `defer` makes it wait a turn first (a
   * connection that has been resetting streams: one reset in the same read
   * then costs nothing).
   */
  stream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rawHeaders: readonly string[],
    toCompat: () => void,
    defer: boolean,
  ): void;
  /** Node's answer to an Expect it does not know is an empty 417: this one says why, in JSON. */
  readonly checkExpectation: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

/** What a client's stream or response can emit once it is gone: its end, handled through 'close'. */
function ignoreError(): void {}

export function createIntake(options: IntakeOptions): Intake {
  return new FrontDoor(options);
}

class FrontDoor implements Intake {
  /** Streams on their way through the compatibility layer, and what to do with them there. */
  private readonly viaCompat = new WeakMap<http2.ServerHttp2Stream, { x: Exchange; go: () => void }>();

  constructor(private readonly options: IntakeOptions) {}

  readonly request = (req: NodeRequest, res: NodeResponse): void => {
    req.on("error", ignoreError);
    res.on("error", ignoreError);
    if ("stream" in req) {
      const pending = this.viaCompat.get(req.stream);
      if (pending !== undefined) {
        this.viaCompat.delete(req.stream);
        pending.x.transport = { kind: "node", req, res };
        for (const [name, value] of Object.entries(pending.x.responseHeaders)) res.setHeader(name, value);
        this.run(pending.x, pending.go);
        return;
      }
    }
    const connection = "stream" in req ? (req.stream.session ?? req.socket) : req.socket;
    this.handle(this.exchange(nodeHead(req), { kind: "node", req, res }, req.socket, connection));
  };

  readonly stream = (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rawHeaders: readonly string[],
    toCompat: () => void,
    defer: boolean,
  ): void => {
    // First of all, on every road and in every state: session.destroy(err)
    // emits err on each of its streams, and so does a stream closed with a
    // code other than NO_ERROR or CANCEL, also while it waits a turn below.
    stream.on("error", ignoreError);
    const begin = () => {
      const session = stream.session;
      if (session === undefined || stream.destroyed || stream.closed) return;
      const x = this.exchange(
        h2Head(stream, headers),
        { kind: "h2", stream, headers, rawHeaders },
        session.socket,
        session,
      );
      this.handle(x, toCompat);
    };
    const { budget } = this.options.streams;
    if (defer) setImmediate(begin);
    // Past this turn's slice a new stream waits in the budget's line of new streams: ten
    // thousand streams in one read must not take their whole setup out of one turn.
    else if (!budget.allows()) budget.deferChange({ deferredNext: undefined, resumeTurn: begin });
    else begin();
  };

  readonly checkExpectation = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const body = JSON.stringify({
      code: "invalid_argument",
      message: `Expect: ${String(req.headers.expect).slice(0, 64)} is not supported`,
    });
    res.writeHead(417, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  private handle(x: Exchange, toCompat?: () => void): void {
    let route: Route;
    try {
      route = this.routeOf(x.head);
      x.call.protocol = route.protocol?.(x.head) ?? "";
      for (const policy of this.options.policies) {
        const verdict = policy(x, route);
        if (verdict === "answered") return;
        if (verdict !== undefined) {
          this.refuse(x, route, verdict, toCompat);
          return;
        }
      }
    } catch (e) {
      this.failed(x, e);
      return;
    }
    this.onRoad(x, route, toCompat, () => route.serve(x));
  }

  private routeOf(head: RequestHead): Route {
    for (const road of this.options.roads) {
      const route = road.route(head);
      if (route !== undefined) return route;
    }
    throw new Error("no road takes the request: the last road must take every request");
  }

  private refuse(x: Exchange, route: Route, error: ConnectError, toCompat: (() => void) | undefined): void {
    if (route.stream) this.options.streams.refuse(x.call, route.asked?.(x) ?? {}, error);
    this.onRoad(x, route, toCompat, () => route.refuse(x, error));
  }

  /** Runs `go` with the transport the route wants: through Node's compatibility layer for a road that needs it. */
  private onRoad(x: Exchange, route: Route, toCompat: (() => void) | undefined, go: () => void): void {
    const t = x.transport;
    if (t.kind === "h2" && !route.raw && toCompat !== undefined) {
      this.viaCompat.set(t.stream, { x, go });
      toCompat();
      // Node answered it itself (an Expect it does not know): nothing came back.
      this.viaCompat.delete(t.stream);
      return;
    }
    if (t.kind === "node") for (const [name, value] of Object.entries(x.responseHeaders)) t.res.setHeader(name, value);
    this.run(x, go);
  }

  private run(x: Exchange, go: () => void): void {
    try {
      go();
    } catch (e) {
      this.failed(x, e);
    }
  }

  private failed(x: Exchange, e: unknown): void {
    this.options.logger.warn("request handler failed", {
      error: e instanceof Error ? e.message : String(e),
      path: x.head.path,
    });
    if (!answerStarted(x)) answerJson(x, 400, "invalid_argument", "malformed request");
    else if (x.transport.kind === "node") x.transport.res.destroy();
    else x.transport.stream.destroy();
  }

  private exchange(head: RequestHead, transport: Transport, socket: SocketLike, connection: object): Exchange {
    return {
      head,
      transport,
      responseHeaders: {},
      timeoutMs: undefined,
      call: createCallInfo({
        socket,
        connection,
        client: this.options.clients.ofRequest(socket?.remoteAddress, head.headers["x-forwarded-for"]),
        httpVersion: head.version,
        requestIdHeader: single(head.headers["x-request-id"]),
        traceparent: single(head.headers.traceparent),
        tracestate: single(head.headers.tracestate),
      }),
    };
  }
}

type SocketLike = { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined;

function nodeHead(req: NodeRequest): RequestHead {
  const target = req.url ?? "/";
  const q = target.indexOf("?");
  const length = req.headers["content-length"];
  return {
    version: (req.httpVersion === "1.0" ? "1.0" : req.httpVersion === "2.0" ? "2.0" : "1.1") as HttpVersion,
    method: req.method ?? "GET",
    path: q === -1 ? target : target.slice(0, q),
    target,
    contentType: single(req.headers["content-type"]),
    headers: req.headers,
    hasBody: req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0"),
  };
}

function h2Head(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): RequestHead {
  const target = headers[":path"] ?? "/";
  const q = target.indexOf("?");
  return {
    version: "2.0",
    method: headers[":method"] ?? "GET",
    path: q === -1 ? target : target.slice(0, q),
    target,
    contentType: single(headers["content-type"]),
    headers,
    // END_STREAM on the headers: Node has ended the readable side already.
    hasBody: !stream.endAfterHeaders,
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
