import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Config } from "../config/config.js";
import type { Intake } from "../door/intake.js";
import type { Logger } from "../ops/log.js";
import { onClientError } from "./client-errors.js";
import type { RequestHandler } from "./connection-age.js";
import { http1Options, http2Options, secureOptions } from "./server-options.js";
import { sniff } from "./sniff.js";

// The two ways one port serves both HTTP versions: with a certificate, TLS
// ALPN picks h2 or http/1.1 on one node:http2 server; in cleartext, one
// net.Server takes every connection and its first bytes pick (sniff.ts).

/** What both kinds of listener hand every connection, request and HTTP/2 server. */
export interface Wiring {
  intake: Intake;
  logger: Logger;
  request: RequestHandler;
  /** False when the connection was refused (and is already being closed). */
  accept(socket: net.Socket): boolean;
  /** Puts the front door on an HTTP/2 server's streams and a guard on each of its sessions. */
  toStreams(server: http2.Http2Server | http2.Http2SecureServer): void;
}

export interface Servers {
  /** The server that accepts every connection. */
  outer: net.Server;
  closeIdle(): void;
  stopHttp1(): void;
}

/** TLS: ALPN picks h2 or http/1.1, and one node:http2 server serves both. */
export function secureServers(config: Config, wiring: Wiring): Servers {
  const secure = http2.createSecureServer(secureOptions(config), wiring.request);
  // allowHTTP1 serves HTTP/1.1 with node:http's connection listener, which
  // reads these from the server object (Node sets its own defaults on it:
  // 60 s, 300 s): give them ours, before 'listening' starts the checks.
  Object.assign(secure, http1Options(config));
  wiring.toStreams(secure);
  secure.prependListener("connection", wiring.accept);
  secure.on("checkExpectation", wiring.intake.checkExpectation);
  secure.on("clientError", onClientError(wiring.logger));
  secure.on("tlsClientError", (err) => wiring.logger.debug("tls client error", { error: err.message }));
  // At runtime since Node 18.19 (HTTP/1.1 connections only), not yet in @types/node 20.
  const withIdle = secure as unknown as { closeIdleConnections?: () => void };
  return { outer: secure, closeIdle: () => withIdle.closeIdleConnections?.(), stopHttp1: () => {} };
}

/** Cleartext: one net.Server takes every connection, and its first bytes pick HTTP/2 or HTTP/1.1. */
export function cleartextServers(config: Config, wiring: Wiring): Servers {
  const h1 = http.createServer(http1Options(config), wiring.request);
  h1.on("checkExpectation", wiring.intake.checkExpectation);
  h1.on("clientError", onClientError(wiring.logger));
  const h2 = http2.createServer(http2Options(config), wiring.request);
  wiring.toStreams(h2);
  // h1 never listens itself (it gets sockets from the sniffer), but Node only
  // starts tracking connections, the headers/request timeouts and
  // closeIdleConnections() on 'listening': start them by hand.
  h1.emit("listening");
  // One net.Server for both versions, so maxConnections counts them all.
  const outer = net.createServer((socket) => {
    if (!wiring.accept(socket)) return;
    sniff(socket, config.headersTimeoutMs, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
  });
  return {
    outer,
    closeIdle: () => h1.closeIdleConnections(),
    // Stops node:http's connection-checking timer; the callback takes the "not running" error such a server reports.
    stopHttp1: () => h1.close(() => {}),
  };
}
