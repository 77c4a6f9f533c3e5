import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Config } from "../config/config.js";
import type { ClientAddresses } from "../door/client-address.js";
import type { Intake } from "../door/intake.js";
import type { Logger } from "../ops/log.js";
import { onClientError } from "./client-errors.js";
import { closeAgedHttp1 } from "./connection-age.js";
import { createConnectionGate, throttledLog } from "./connection-gate.js";
import { connectionLimit, openFilesLimit } from "./open-files.js";
import { guardSession, type SessionGuard } from "./session-guard.js";
import { sniff } from "./sniff.js";

// One port for every client: the sockets, their limits, TLS, and the HTTP
// servers that turn them into requests and streams for the front door
// (src/door/), which decides what becomes of each. Cleartext connections are
// told apart by their first bytes (sniff.ts); with a certificate, TLS ALPN
// picks h2 or http/1.1.

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

export interface ListenOptions {
  intake: Intake;
  clients: ClientAddresses;
  logger: Logger;
  /** Ends a session's open streams with a status when its --max-connection-age grace is over. */
  endStreams: (session: http2.ServerHttp2Session) => void;
  /** Told of every connection accepted: the streams' turns stay short while more wait (TurnBudget.press()). */
  onAccept: () => void;
}

export async function listen(config: Config, options: ListenOptions): Promise<Listener> {
  const { intake, logger } = options;
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  const guards = new WeakMap<http2.Http2Session, SessionGuard>();
  const openFiles = openFilesLimit();
  const maxConnections = connectionLimit(config.maxConnections, openFiles);
  const gate = createConnectionGate({
    maxPerClient: config.maxConnectionsPerClient || perClientShare(maxConnections),
    clients: options.clients,
    notSentLowat: config.tcpNotSentLowat,
    logger,
  });
  /** Every connection, from its first moment: a peer's reset is this connection's end, never the process's. */
  const accept = (socket: net.Socket): boolean => {
    socket.on("error", ignoreError);
    options.onAccept();
    if (!gate(socket)) return false;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    return true;
  };
  const onSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // A peer's protocol error ends its session, never the process.
    session.on("error", (err) => logger.debug("http2 session error", { error: err.message }));
    guards.set(session, guardSession(session, guardOptions(config, logger, options.endStreams)));
  };
  const request = closeAgedHttp1(intake.request, config.maxConnectionAgeMs);
  const toStreams = (server: http2.Http2Server | http2.Http2SecureServer) => {
    divertStreams(server, intake, (s) =>
      s.session === undefined ? false : guards.get(s.session)?.suspicious() === true,
    );
    server.on("session", onSession);
  };

  let outer: net.Server;
  let closeIdle: () => void;
  let stopHttp1 = () => {};
  const http1 = http1Options(config);
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    const secure = http2.createSecureServer(secureOptions(config), request);
    // allowHTTP1 serves HTTP/1.1 with node:http's connection listener, which
    // reads these from the server object (Node sets its own defaults on it:
    // 60 s, 300 s): give them ours, before 'listening' starts the checks.
    Object.assign(secure, http1);
    toStreams(secure);
    secure.prependListener("connection", accept);
    secure.on("checkExpectation", intake.checkExpectation);
    secure.on("clientError", onClientError(logger));
    secure.on("tlsClientError", (err) => logger.debug("tls client error", { error: err.message }));
    outer = secure;
    // At runtime since Node 18.19 (HTTP/1.1 connections only), not yet in @types/node 20.
    const withIdle = secure as unknown as { closeIdleConnections?: () => void };
    closeIdle = () => withIdle.closeIdleConnections?.();
  } else {
    const h1 = http.createServer(http1, request);
    h1.on("checkExpectation", intake.checkExpectation);
    h1.on("clientError", onClientError(logger));
    const h2 = http2.createServer(http2Options(config), request);
    toStreams(h2);
    // h1 never listens itself (it gets sockets from the sniffer), but Node only
    // starts tracking connections, the headers/request timeouts and
    // closeIdleConnections() on 'listening': start them by hand.
    h1.emit("listening");
    closeIdle = () => h1.closeIdleConnections();
    // Stops node:http's connection-checking timer; the callback takes the "not running" error such a server reports.
    stopHttp1 = () => h1.close(() => {});
    // One net.Server takes every connection of either version, so maxConnections below counts them all.
    outer = net.createServer((socket) => {
      if (!accept(socket)) return;
      sniff(socket, config.headersTimeoutMs, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
    });
  }
  outer.on("error", (err) => logger.error("listener error", { error: err.message }));

  // Past the limit Node closes a new connection as soon as it is accepted,
  // before it costs more than the accept: better a refused client than
  // EMFILE, which would fail every accept, and the files /healthz reads.
  outer.maxConnections = maxConnections;
  if (maxConnections < config.maxConnections) {
    logger.info("max connections lowered to fit the open files limit", {
      max_connections: maxConnections,
      configured: config.maxConnections,
      open_files_limit: openFiles,
    });
  }
  const dropped = throttledLog(logger, "connections refused: --max-connections reached", {
    max_connections: maxConnections,
  });
  outer.on("drop", () => dropped());

  await new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    // Node's default backlog, 511, overflowed under a burst of a thousand connections, and a
    // connection the kernel drops waits a second for its retry: the kernel caps this at somaxconn.
    outer.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
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

function ignoreError(): void {}

/** Connections the kernel may hold for us before we accept them (net.core.somaxconn caps it, 4096 by default). */
const LISTEN_BACKLOG = 4096;

/** A client's share when none is configured: a tenth of the whole, at least 100 (never more than the whole). */
export function perClientShare(total: number): number {
  return Math.min(total, Math.max(100, Math.floor(total / 10)));
}

function http2Options(config: Config): http2.ServerOptions {
  return {
    maxSessionMemory: config.http2SessionMemoryMiB,
    // Past the header list size nghttp2 resets the stream (ENHANCE_YOUR_CALM, which grpc-js reads as
    // RESOURCE_EXHAUSTED) before it reaches any road; the front door does the same until then.
    settings: { maxConcurrentStreams: config.maxConcurrentStreams, maxHeaderListSize: config.maxHeaderBytes },
  };
}

function secureOptions(config: Config): http2.SecureServerOptions {
  return {
    ...http2Options(config),
    cert: readFileSync(config.tlsCert as string),
    key: readFileSync(config.tlsKey as string),
    allowHTTP1: true,
    ALPNProtocols: ["h2", "http/1.1"],
    // mTLS: a client without a certificate that one of these CAs signed fails the handshake.
    ...(config.tlsClientCa === undefined
      ? {}
      : { ca: readFileSync(config.tlsClientCa), requestCert: true, rejectUnauthorized: true }),
    // A TLS handshake that does not finish is cut like a request head that does not come.
    handshakeTimeout: config.headersTimeoutMs,
  };
}

/** HTTP/1.1's limits, the same over cleartext and TLS. */
function http1Options(config: Config) {
  return {
    maxHeaderSize: config.maxHeaderBytes,
    // Node's own answer to a request without Host is an empty 400; the front door answers it in JSON.
    requireHostHeader: false,
    headersTimeout: config.headersTimeoutMs,
    // A backstop: the front door answers a body that is late by --headers-timeout with 408 itself.
    requestTimeout: config.headersTimeoutMs * 3,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node checks the two timeouts above on this period (default 30 s).
    connectionsCheckingInterval: Math.min(1000, Math.max(50, config.headersTimeoutMs / 2)),
  } satisfies http.ServerOptions;
}

function guardOptions(config: Config, logger: Logger, endStreams: (session: http2.ServerHttp2Session) => void) {
  return {
    idleTimeoutMs: config.h2IdleTimeoutMs,
    pingIntervalMs: config.h2PingIntervalMs,
    pingTimeoutMs: config.h2PingTimeoutMs,
    maxResets: config.h2MaxResets,
    maxAgeMs: config.maxConnectionAgeMs,
    maxAgeGraceMs: config.maxConnectionAgeGraceMs,
    endStreams,
    logger,
  };
}

/**
 * Puts the front door in front of Node's compat layer. A server created with
 * a request listener gets one 'stream' listener from Node (setupCompat binds
 * compat's onServerStream), which builds Http2ServerRequest/Response for
 * every stream and emits 'request'. It has no way to skip a stream, so a
 * listener merely registered before it would still pay for the wrappers (and
 * their six stream listeners) on the lean road. Instead we take Node's
 * listener off and hand it to the front door, which calls it for the roads
 * that want Node's request and response: CONNECT, Expect, and the request
 * objects stay Node's own code. Should a Node version wire compat
 * differently, this throws at startup instead of serving wrong.
 */
function divertStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  intake: Intake,
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
    throw new Error(`front door: expected Node's compat 'stream' listener alone, found ${compat.length} listeners`);
  }
  server.removeListener("stream", toCompat);
  server.on(
    "stream",
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) =>
      intake.stream(
        stream,
        headers,
        rawHeaders,
        () => toCompat.call(server, stream, headers, flags, rawHeaders),
        suspicious(stream),
      ),
  );
}
