import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type * as stream from "node:stream";
import type { Config } from "../config/config.js";
import { discardRestOfRequest, type StreamTaker } from "../http/h2.js";
import type { Logger } from "../ops/log.js";
import { connectionLimit, openFilesLimit } from "./open-files.js";
import { guardSession, type SessionGuard } from "./session-guard.js";

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
  /** Streams of `session` not yet closed: a stream closes once its last frame (the trailers) is sent. */
  openStreams(session: http2.ServerHttp2Session): number;
  /** Open sockets of either HTTP version. */
  readonly sockets: ReadonlySet<net.Socket>;
  /** Closes the HTTP/1.1 connections that wait between two requests. */
  closeIdleConnections(): void;
  /** The connections this listener holds at most (--max-connections, lowered to fit the open files limit). */
  readonly maxConnections: number;
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
    // From its first moment: a peer's reset is this connection's end, never the process's.
    socket.on("error", ignoreError);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const http2Options: http2.ServerOptions = {
    maxSessionMemory: config.http2SessionMemoryMiB,
    // Past the header list size nghttp2 resets the stream (ENHANCE_YOUR_CALM, which grpc-js reads
    // as RESOURCE_EXHAUSTED) before it reaches any road; streamFilter below does the same until then.
    settings: { maxConcurrentStreams: config.maxConcurrentStreams, maxHeaderListSize: config.maxHeaderBytes },
  };
  const guards = new WeakMap<http2.Http2Session, SessionGuard>();
  const suspicious = (stream: http2.ServerHttp2Stream) => {
    const session = stream.session;
    return session !== undefined && guards.get(session)?.suspicious() === true;
  };
  const onSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // A peer's protocol error ends its session, never the process.
    session.on("error", (err) => logger.debug("http2 session error", { error: err.message }));
    guards.set(
      session,
      guardSession(session, {
        idleTimeoutMs: config.h2IdleTimeoutMs,
        pingIntervalMs: config.h2PingIntervalMs,
        pingTimeoutMs: config.h2PingTimeoutMs,
        maxResets: config.h2MaxResets,
        maxAgeMs: config.maxConnectionAgeMs,
        maxAgeGraceMs: config.maxConnectionAgeGraceMs,
        ...(endStreams ? { endStreams } : {}),
        logger,
      }),
    );
  };

  // Before either HTTP/2 road: a header list past the limit is refused the
  // same way whether or not the peer has acknowledged our SETTINGS yet
  // (nghttp2 applies SETTINGS_MAX_HEADER_LIST_SIZE only from then on, so a
  // connection's first requests would get its default of 64 KiB).
  const streamFilter: StreamFilter = (stream, headers, rawHeaders) => {
    if (headerListSize(rawHeaders) > config.maxHeaderBytes) {
      logger.debug("http2 header list too large", { limit: config.maxHeaderBytes });
      stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      return true;
    }
    return takeStream?.(stream, headers) ?? false;
  };

  // HTTP/1.1's limits, the same over cleartext and TLS.
  const http1Options = {
    maxHeaderSize: config.maxHeaderBytes,
    // Node's own answer to a request without Host is an empty 400; the handler answers it in JSON.
    requireHostHeader: false,
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: config.headersTimeoutMs * 3,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node checks the two timeouts above on this period (default 30 s).
    connectionsCheckingInterval: Math.min(1000, Math.max(50, config.headersTimeoutMs / 2)),
  } satisfies http.ServerOptions;
  const onClientError = (err: Error & { code?: string }, socket: stream.Duplex) => {
    logger.debug("http1 client error", { error: err.message, code: err.code });
    if (socket.writable) socket.end(clientErrorResponse(err.code));
    else socket.destroy();
  };

  let outer: net.Server;
  let closeIdle: () => void;
  let stopHttp1 = () => {};
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    const secure = http2.createSecureServer(
      {
        ...http2Options,
        cert: readFileSync(config.tlsCert),
        key: readFileSync(config.tlsKey),
        allowHTTP1: true,
        ALPNProtocols: ["h2", "http/1.1"],
        // mTLS: a client without a certificate that one of these CAs signed fails the handshake.
        ...(config.tlsClientCa === undefined
          ? {}
          : { ca: readFileSync(config.tlsClientCa), requestCert: true, rejectUnauthorized: true }),
        // A TLS handshake that does not finish is cut like a request head that does not come.
        handshakeTimeout: config.headersTimeoutMs,
      },
      endUnreadRequests(handler),
    );
    // allowHTTP1 serves HTTP/1.1 with node:http's connection listener, which
    // reads these from the server object (Node sets its own defaults on it:
    // 60 s, 300 s): give them ours, before 'listening' starts the checks.
    Object.assign(secure, http1Options);
    divertStreams(secure, streamFilter, suspicious);
    secure.on("session", onSession);
    secure.on("secureConnection", track);
    secure.on("clientError", onClientError);
    secure.on("tlsClientError", (err) => logger.debug("tls client error", { error: err.message }));
    outer = secure;
    // At runtime since Node 18.19 (HTTP/1.1 connections only), not yet in @types/node 20.
    const withIdle = secure as unknown as { closeIdleConnections?: () => void };
    closeIdle = () => withIdle.closeIdleConnections?.();
  } else {
    const h1 = http.createServer(http1Options, endUnreadRequests(handler));
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
    divertStreams(h2, streamFilter, suspicious);
    h2.on("session", onSession);
    h1.on("clientError", onClientError);
    // h1 never listens itself (it gets sockets from the sniffer), but Node only
    // starts tracking connections, the headers/request timeouts and
    // closeIdleConnections() on 'listening': start them by hand.
    h1.emit("listening");
    closeIdle = () => h1.closeIdleConnections();
    // Stops node:http's connection-checking timer, which a server that never listened itself keeps;
    // the callback takes the "not running" error such a server reports.
    stopHttp1 = () => h1.close(() => {});
    // One net.Server takes every connection of either version, so
    // maxConnections below counts them all.
    outer = net.createServer((socket) => {
      track(socket);
      sniff(socket, config.headersTimeoutMs, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
    });
  }
  outer.on("error", (err) => logger.error("listener error", { error: err.message }));

  // Past the limit Node closes a new connection as soon as it is accepted,
  // before it costs more than the accept: better a refused client than
  // EMFILE, which would fail every accept, and the files /healthz reads.
  const openFiles = openFilesLimit();
  const maxConnections = connectionLimit(config.maxConnections, openFiles);
  outer.maxConnections = maxConnections;
  if (maxConnections < config.maxConnections) {
    logger.info("max connections lowered to fit the open files limit", {
      max_connections: maxConnections,
      configured: config.maxConnections,
      open_files_limit: openFiles,
    });
  }
  outer.on("drop", throttledDropLog(logger, maxConnections));

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
    openStreams: (session) => guards.get(session)?.openStreams() ?? 0,
    sockets,
    closeIdleConnections: () => closeIdle(),
    maxConnections,
    stopAccepting: () =>
      new Promise((resolve) =>
        outer.close(() => {
          stopHttp1();
          resolve();
        }),
      ),
  };
}

/**
 * One warning when connections start being refused, then at most one every
 * 10 s with how many: a flood must not become a flood of log lines.
 */
function throttledDropLog(logger: Logger, limit: number): () => void {
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  const report = () => {
    timer = undefined;
    if (dropped === 0) return;
    logger.warn("connections refused: --max-connections reached", { refused: dropped, max_connections: limit });
    dropped = 0;
    timer = setTimeout(report, 10_000).unref();
  };
  return () => {
    dropped++;
    if (timer === undefined) report();
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

/** What a client's connection, stream or response can emit once it is gone: its end, already handled through 'close'. */
function ignoreError(): void {}

function endUnreadRequests(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    // A response written after its socket went (ERR_STREAM_DESTROYED) emits 'error' on it.
    req.on("error", ignoreError);
    res.on("error", ignoreError);
    // The stream's own 'finish': compat's response emits 'finish' only once the stream closed.
    if ("stream" in req) req.stream.once("finish", () => discardRestOfRequest(req.stream));
    handler(req, res);
  };
}

/** A StreamTaker that also sees the raw header list. */
type StreamFilter = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  rawHeaders: readonly string[],
) => boolean;

/**
 * Puts `take` in front of Node's compat layer. A server created with a request
 * listener gets one 'stream' listener from Node (setupCompat binds compat's
 * onServerStream), which builds Http2ServerRequest/Response for every stream
 * and emits 'request'. It has no way to skip a stream, so a listener merely
 * registered before it would still pay for the wrappers (and their six stream
 * listeners) on the lean road. Instead we take Node's listener off and call it
 * ourselves for every stream `take` leaves: CONNECT, Expect, and the request
 * objects stay Node's own code, nothing of it is copied. Should a Node version
 * wire compat differently, this throws at startup instead of serving wrong.
 *
 * On a connection whose peer has been resetting streams before they were
 * answered, a new stream waits one turn first: a rapid-reset burst arrives in
 * one read, each HEADERS followed by its RST_STREAM, and a stream already
 * reset by then costs nothing more.
 */
function divertStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  take: StreamFilter,
  suspicious: (stream: http2.ServerHttp2Stream) => boolean,
): void {
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
  const dispatch: OnStream = (stream, headers, flags, rawHeaders) => {
    if (!take(stream, headers, rawHeaders)) toCompat.call(server, stream, headers, flags, rawHeaders);
  };
  const onStream: OnStream = (stream, headers, flags, rawHeaders) => {
    // Before anything else, on every road and in every state: session.destroy(err)
    // emits err on each of its streams, and a stream closed with a code other
    // than NO_ERROR or CANCEL emits one too, also while it waits a turn below.
    stream.on("error", ignoreError);
    if (!suspicious(stream)) return dispatch(stream, headers, flags, rawHeaders);
    setImmediate(() => {
      if (!stream.destroyed && !stream.closed) dispatch(stream, headers, flags, rawHeaders);
    });
  };
  server.on("stream", onStream);
}

/** RFC 9113 section 6.5.2's size of a header list: each field's name and value, plus 32. */
function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (const field of rawHeaders) size += field.length;
  return size + 16 * rawHeaders.length;
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
