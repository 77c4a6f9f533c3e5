import { cors } from "@connectrpc/connect";
import type { Exchange } from "../http/exchange.js";
import { answerEmpty } from "../http/exchange.js";
import type { Policy } from "./policies.js";

// CORS for the whole port: the RPC (Connect and gRPC-Web from a browser),
// GET /stream, and everything else. Only listed origins get CORS headers; any
// other origin gets the plain response, which the browser then hides from
// the page. The method and header lists are connect-es's own, so a new
// Connect header needs no change here.

export interface CorsOptions {
  /** Origins allowed, exactly as browsers send them in Origin; "*" allows any. Default none. */
  allowedOrigins: readonly string[];
  /** How long a browser may cache a preflight answer, in seconds. Default 7200 (Chromium's cap). */
  maxAgeSeconds?: number;
}

/**
 * What we add to Connect's lists: EventSource's resume header, our request
 * id, and the bearer token (--auth-token-file) with the challenge that
 * answers its absence.
 */
const streamRequestHeaders = ["Last-Event-ID", "X-Request-Id", "Authorization"];
const streamResponseHeaders = ["X-Request-Id", "WWW-Authenticate"];

/** Answers preflights from allowed origins, and gives every other answer the headers its origin may read. */
export function corsPolicy(options: CorsOptions): Policy {
  const origins = new Set(options.allowedOrigins);
  if (origins.size === 0) return () => undefined;
  const anyOrigin = origins.has("*");
  const allows = (origin: string) => anyOrigin || origins.has(origin);
  const exposeHeaders = [...cors.exposedHeaders, ...streamResponseHeaders].join(", ");
  const preflight = {
    "access-control-allow-methods": cors.allowedMethods.join(", "),
    "access-control-allow-headers": [...cors.allowedHeaders, ...streamRequestHeaders].join(", "),
    "access-control-max-age": String(options.maxAgeSeconds ?? 7200),
  };
  return (x: Exchange) => {
    const origin = x.head.headers.origin;
    if (origin === undefined) return undefined;
    // Each origin gets a different answer, so no cache may hand one origin's answer to another.
    x.responseHeaders.vary = "Origin";
    if (!allows(origin)) return undefined;
    if (x.head.method === "OPTIONS" && x.head.headers["access-control-request-method"] !== undefined) {
      answerEmpty(x, 204, { vary: "Origin", "access-control-allow-origin": origin, ...preflight });
      return "answered";
    }
    x.responseHeaders["access-control-allow-origin"] = origin;
    x.responseHeaders["access-control-expose-headers"] = exposeHeaders;
    return undefined;
  };
}
