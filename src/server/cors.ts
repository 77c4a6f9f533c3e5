import { cors } from "@connectrpc/connect";
import type { RequestHandler } from "./listen.js";

// CORS for the whole port: the RPC (Connect and gRPC-Web from a browser) and
// GET /stream. Only listed origins get CORS headers; any other origin gets the
// plain response, which the browser then hides from the page. The method and
// header lists are connect-es's own, so a new Connect header needs no change here.

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

export function withCors(handler: RequestHandler, options: CorsOptions): RequestHandler {
  const origins = new Set(options.allowedOrigins);
  if (origins.size === 0) return handler;
  const anyOrigin = origins.has("*");
  const allowMethods = cors.allowedMethods.join(", ");
  const allowHeaders = [...cors.allowedHeaders, ...streamRequestHeaders].join(", ");
  const exposeHeaders = [...cors.exposedHeaders, ...streamResponseHeaders].join(", ");
  const maxAge = String(options.maxAgeSeconds ?? 7200);
  return (req, res) => {
    const origin = req.headers.origin;
    // Each origin gets a different answer, so no cache may hand one origin's answer to another.
    if (origin !== undefined) res.setHeader("vary", "Origin");
    if (origin === undefined || !(anyOrigin || origins.has(origin))) {
      handler(req, res);
      return;
    }
    res.setHeader("access-control-allow-origin", origin);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      res.writeHead(204, {
        "access-control-allow-methods": allowMethods,
        "access-control-allow-headers": allowHeaders,
        "access-control-max-age": maxAge,
      });
      res.end();
      return;
    }
    res.setHeader("access-control-expose-headers", exposeHeaders);
    handler(req, res);
  };
}
