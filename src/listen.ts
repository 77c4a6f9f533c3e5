import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Config } from "./config.js";
import type { Logger } from "./log.js";

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

export async function listen(config: Config, handler: RequestHandler, logger: Logger): Promise<Listener> {
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
      handler,
    );
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
      },
      handler,
    );
    const h2 = http2.createServer(http2Options, handler);
    h2.on("session", onSession);
    h1.on("clientError", (err: Error, socket: net.Socket) => {
      logger.debug("http1 client error", { error: err.message });
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      else socket.destroy();
    });
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
