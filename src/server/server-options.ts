import { readFileSync } from "node:fs";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { Config } from "../config/config.js";
import type { Logger } from "../ops/log.js";

// What the flags make of Node's HTTP servers and of each HTTP/2 session's
// guard: every limit handed to node:http and node:http2 is set here, the
// same over cleartext and TLS.

export function http2Options(config: Config): http2.ServerOptions {
  return {
    maxSessionMemory: config.http2SessionMemoryMiB,
    // Past the header list size nghttp2 resets the stream (ENHANCE_YOUR_CALM, which grpc-js reads as
    // RESOURCE_EXHAUSTED) before it reaches any road; the front door does the same until then.
    settings: { maxConcurrentStreams: config.maxConcurrentStreams, maxHeaderListSize: config.maxHeaderBytes },
  };
}

export function secureOptions(config: Config): http2.SecureServerOptions {
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
export function http1Options(config: Config) {
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

export function guardOptions(config: Config, logger: Logger, endStreams: (session: http2.ServerHttp2Session) => void) {
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
