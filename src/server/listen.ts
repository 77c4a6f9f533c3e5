import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Config } from "../config/config.js";
import { discardRestOfRequest, type StreamTaker } from "../http/h2.js";
import type { Logger } from "../ops/log.js";
import { guardSession } from "./session-guard.js";

// One port for every client. Cleartext: HTTP/2 with prior knowledge (what gRPC
// clients send) and HTTP/1.1 (curl, browsers, proxies) are told apart by the
// HTTP/2 connection preface, because Node's allowHTTP1 only works over TLS.
// With a certificate, TLS ALPN picks h2 or http/1.1 instead.

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface Listener {
  /** The bound address, once listening. */
  address(): net.AddressInfo;
  /** Open HTTP/2 sessions, for GOAWAY at shutdown. */
  readonly sessions: ReadonlySet<http2.ServerHttp2Session>;
  /** Open sockets of either HTTP version. */
  readonly sockets: ReadonlySet<net.Socket>;
  /** The HTTP/1.1 server, for closeIdleConnections() at shutdown. */
  readonly http1: http.Server | undefined;
  /** Stops accepting connections; open ones stay. */
  stopAccepting(): Promise<void>;
}

export async function listen(
  config: Config,
  handler: RequestHandler,
  logger: Logger,
  takeStream?: StreamTaker,
  /** Ends a session's open streams with a status when its --max-connection-age grace is over. */
  endStreams?: (session: http2.ServerHttp2Session) => void,
): Promise<Listener> {
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const http2Options: http2.ServerOptions = {
    maxSessionMemory: config.http2SessionMemoryMiB,
    settings: { maxConcurrentStreams: config.maxConcurrentStreams },
  };
  const onSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // A peer's protocol error ends its session, never the process.
    session.on("error", (err) => logger.debug("http2 session error", { error: err.message }));
    guardSession(session, {
      idleTimeoutMs: config.h2IdleTimeoutMs,
      pingIntervalMs: config.h2PingIntervalMs,
      pingTimeoutMs: config.h2PingTimeoutMs,
      maxResets: config.h2MaxResets,
      maxAgeMs: config.maxConnectionAgeMs,
      maxAgeGraceMs: config.maxConnectionAgeGraceMs,
      ...(endStreams ? { endStreams } : {}),
      logger,
    });
  };

  let outer: net.Server;
  let http1: http.Server | undefined;
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    const secure = http2.createSecureServer(
      {
        ...http2Options,
        cert: readFileSync(config.tlsCert),
        key: readFileSync(config.tlsKey),
        allowHTTP1: true,
        ALPNProtocols: ["h2", "http/1.1"],
      },
      endUnreadRequests(handler),
    );
    if (takeStream) divertStreams(secure, takeStream);
    secure.on("session", onSession);
    secure.on("secureConnection", track);
    secure.on("tlsClientError", (err) => logger.debug("tls client error", { error: err.message }));
    outer = secure;
  } else {
    const h1 = http.createServer(
      {
        headersTimeout: config.headersTimeoutMs,
        requestTimeout: config.headersTimeoutMs * 3,
        keepAliveTimeout: config.keepAliveTimeoutMs,
        // Node checks the two timeouts above on this period (default 30 s).
        connectionsCheckingInterval: Math.min(1000, Math.max(50, config.headersTimeoutMs / 2)),
        // Node's own answer to a request without Host is an empty 400; the handler answers it in JSON.
        requireHostHeader: false,
      },
      handler,
    );
    // Node's own answer to an Expect it does not know is an empty 417.
    h1.on("checkExpectation", (req: http.IncomingMessage, res: http.ServerResponse) => {
      const body = JSON.stringify({
        code: "invalid_argument",
        message: `Expect: ${String(req.headers.expect).slice(0, 64)} is not supported`,
      });
      res.writeHead(417, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    const h2 = http2.createServer(http2Options, endUnreadRequests(handler));
    if (takeStream) divertStreams(h2, takeStream);
    h2.on("session", onSession);
    h1.on("clientError", (err: Error & { code?: string }, socket: net.Socket) => {
      logger.debug("http1 client error", { error: err.message, code: err.code });
      if (socket.writable) socket.end(clientErrorResponse(err.code));
      else socket.destroy();
    });
    // h1 never listens itself (it gets sockets from the sniffer), but Node only
    // starts tracking connections, the headers/request timeouts and
    // closeIdleConnections() on 'listening': start them by hand.
    h1.emit("listening");
    http1 = h1;
    outer = net.createServer((socket) => {
      track(socket);
      sniff(socket, config.headersTimeoutMs, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
    });
  }
  outer.on("error", (err) => logger.error("listener error", { error: err.message }));

  await new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    outer.listen(config.port, config.host, () => {
      outer.off("error", reject);
      resolve();
    });
  });

  return {
    address: () => outer.address() as net.AddressInfo,
    sessions,
    sockets,
    http1,
    stopAccepting: () => new Promise((resolve) => outer.close(() => resolve())),
  };
}

/**
 * The answer to a request Node's HTTP/1.1 parser gave up on, in the JSON
 * error shape of GET /stream, with the status Node's own default handler
 * would pick: 408 for a head or body that came too slowly, 431 for a head
 * (a long query string among it) past the size limit, 400 for the rest.
 */
function clientErrorResponse(code: string | undefined): string {
  const [status, reason, body] =
    code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request Timeout", { code: "deadline_exceeded", message: "the request did not arrive in time" }]
      : code === "HPE_HEADER_OVERFLOW"
        ? [
            431,
            "Request Header Fields Too Large",
            { code: "resource_exhausted", message: "the request line and headers are too large" },
          ]
        : [400, "Bad Request", { code: "invalid_argument", message: "malformed HTTP request" }];
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`
  );
}

function endUnreadRequests(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    // The stream's own 'finish': compat's response emits 'finish' only once the stream closed.
    if ("stream" in req) req.stream.once("finish", () => discardRestOfRequest(req.stream));
    handler(req, res);
  };
}

/**
 * Puts `take` in front of Node's compat layer. A server created with a request
 * listener gets one 'stream' listener from Node (setupCompat binds compat's
 * onServerStream), which builds Http2ServerRequest/Response for every stream
 * and emits 'request'. It has no way to skip a stream, so a listener merely
 * registered before it would still pay for the wrappers (and their six stream
 * listeners) on the fast path. Instead we take Node's listener off and call it
 * ourselves for every stream `take` leaves: CONNECT, Expect, and the request
 * objects stay Node's own code, nothing of it is copied. Should a Node version
 * wire compat differently, this throws at startup instead of serving wrong.
 */
function divertStreams(server: http2.Http2Server | http2.Http2SecureServer, take: StreamTaker): void {
  type OnStream = (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    flags: number,
    rawHeaders: string[],
  ) => void;
  const compat = server.listeners("stream") as OnStream[];
  const toCompat = compat[0];
  if (compat.length !== 1 || toCompat === undefined) {
    throw new Error(`fast path: expected Node's compat 'stream' listener alone, found ${compat.length} listeners`);
  }
  server.removeListener("stream", toCompat);
  const onStream: OnStream = (stream, headers, flags, rawHeaders) => {
    if (!take(stream, headers)) toCompat.call(server, stream, headers, flags, rawHeaders);
  };
  server.on("stream", onStream);
}

/**
 * Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1, then
 * puts the bytes back. The socket stays in paused mode (read(), never a
 * "data" listener): Node's HTTP/1.1 parser takes over the socket's handle and
 * would never see bytes that a flowing-mode listener had already taken.
 */
function sniff(socket: net.Socket, timeoutMs: number, dispatch: (isHttp2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const onError = () => socket.destroy();
  const onClose = () => clearTimeout(timer);
  const done = (isHttp2: boolean) => {
    clearTimeout(timer);
    socket.off("error", onError);
    socket.off("close", onClose);
    socket.unshift(seen);
    dispatch(isHttp2);
  };
  const onReadable = () => {
    const chunk: Buffer | null = socket.read();
    if (chunk !== null) {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      if (seen.compare(PREFACE, 0, n, 0, n) !== 0) return done(false);
      if (seen.length >= PREFACE.length) return done(true);
    }
    socket.once("readable", onReadable);
  };
  socket.on("error", onError);
  socket.on("close", onClose);
  onReadable();
}
