import type * as http2 from "node:http2";
import type * as net from "node:net";
import type { Config } from "../config/config.js";
import type { ClientAddresses } from "../door/client-address.js";
import type { Intake } from "../door/intake.js";
import type { Logger } from "../ops/log.js";
import { closeAgedHttp1 } from "./connection-age.js";
import { createConnectionGate, throttledLog } from "./connection-gate.js";
import { divertStreams } from "./divert-streams.js";
import { closeGradually } from "./gradual-close.js";
import { cleartextServers, secureServers, type Wiring } from "./http-servers.js";
import { connectionLimit, openFilesLimit } from "./open-files.js";
import { guardOptions } from "./server-options.js";
import { guardSession, type SessionGuard } from "./session-guard.js";

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
  const wiring: Wiring = {
    intake,
    logger,
    request: closeAgedHttp1(intake.request, config.maxConnectionAgeMs),
    /** Every connection, from its first moment: a peer's reset is this connection's end, never the process's. */
    accept(socket) {
      socket.on("error", ignoreError);
      options.onAccept();
      if (!gate(socket)) return false;
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      return true;
    },
    toStreams(server) {
      divertStreams(server, intake, (s) =>
        s.session === undefined ? false : guards.get(s.session)?.suspicious() === true,
      );
      server.on("session", (session: http2.ServerHttp2Session) => {
        sessions.add(session);
        session.once("close", () => sessions.delete(session));
        // A peer's protocol error ends its session, never the process.
        session.on("error", (err) => logger.debug("http2 session error", { error: err.message }));
        guards.set(session, guardSession(session, guardOptions(config, logger, options.endStreams)));
        closeGradually(session);
      });
    },
  };
  const servers =
    config.tlsCert !== undefined && config.tlsKey !== undefined
      ? secureServers(config, wiring)
      : cleartextServers(config, wiring);
  const { outer } = servers;
  outer.on("error", (err) => logger.error("listener error", { error: err.message }));
  limitConnections(outer, config, maxConnections, openFiles, logger);
  await bind(outer, config);

  return {
    address: () => outer.address() as net.AddressInfo,
    sessions,
    openStreams: (session) => guards.get(session)?.openStreams() ?? 0,
    sockets,
    closeIdleConnections: () => servers.closeIdle(),
    maxConnections,
    stopAccepting: () =>
      new Promise((resolve) =>
        outer.close(() => {
          servers.stopHttp1();
          resolve();
        }),
      ),
  };
}

/**
 * Past the limit Node closes a new connection as soon as it is accepted,
 * before it costs more than the accept: better a refused client than
 * EMFILE, which would fail every accept, and the files /healthz reads.
 */
function limitConnections(
  outer: net.Server,
  config: Config,
  max: number,
  openFiles: number | undefined,
  logger: Logger,
): void {
  outer.maxConnections = max;
  if (max < config.maxConnections) {
    logger.info("max connections lowered to fit the open files limit", {
      max_connections: max,
      configured: config.maxConnections,
      open_files_limit: openFiles,
    });
  }
  const dropped = throttledLog(logger, "connections refused: --max-connections reached", { max_connections: max });
  outer.on("drop", () => dropped());
}

function bind(outer: net.Server, config: Config): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    // Node's default backlog, 511, overflowed under a burst of a thousand connections, and a
    // connection the kernel drops waits a second for its retry: the kernel caps this at somaxconn.
    outer.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
      outer.off("error", reject);
      resolve();
    });
  });
}

function ignoreError(): void {}

/** Connections the kernel may hold for us before we accept them (net.core.somaxconn caps it, 4096 by default). */
const LISTEN_BACKLOG = 4096;

/** A client's share when none is configured: a tenth of the whole, at least 100 (never more than the whole). */
export function perClientShare(total: number): number {
  return Math.min(total, Math.max(100, Math.floor(total / 10)));
}
