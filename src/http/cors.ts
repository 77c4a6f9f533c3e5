import type * as http from "node:http";
import type * as http2 from "node:http2";
import { cors } from "@connectrpc/connect";

// CORS for the whole port: the RPC (Connect and gRPC-Web from a browser) and
// GET /stream. Only listed origins get CORS headers; any other origin gets the
// plain response, which the browser then hides from the page. The method and
// header lists are connect-es's own, so a new Connect header needs no change
// here. One policy, used by the wrapper in front of connect-node and by the
// lean path, which answers browsers itself.

export interface CorsOptions {
  /** Origins allowed, exactly as browsers send them in Origin; "*" allows any. Default none. */
  allowedOrigins: readonly string[];
  /** How long a browser may cache a preflight answer, in seconds. Default 7200 (Chromium's cap). */
  maxAgeSeconds?: number;
}

export interface CorsPolicy {
  /** The headers every response to a request from `origin` carries (none without an Origin). */
  responseHeaders(origin: string | undefined): Record<string, string>;
}

type Handler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/**
 * What we add to Connect's lists: EventSource's resume header, our request
 * id, and the bearer token (--auth-token-file) with the challenge that
 * answers its absence.
 */
const streamRequestHeaders = ["Last-Event-ID", "X-Request-Id", "Authorization"];
const streamResponseHeaders = ["X-Request-Id", "WWW-Authenticate"];

export function createCorsPolicy(options: CorsOptions): CorsPolicy & { allows(origin: string): boolean } {
  const origins = new Set(options.allowedOrigins);
  const anyOrigin = origins.has("*");
  const exposeHeaders = [...cors.exposedHeaders, ...streamResponseHeaders].join(", ");
  const allows = (origin: string) => origins.size > 0 && (anyOrigin || origins.has(origin));
  return {
    allows,
    responseHeaders(origin) {
      if (origin === undefined || origins.size === 0) return {};
      // Each origin gets a different answer, so no cache may hand one origin's answer to another.
      if (!allows(origin)) return { vary: "Origin" };
      return {
        vary: "Origin",
        "access-control-allow-origin": origin,
        "access-control-expose-headers": exposeHeaders,
      };
    },
  };
}

/** Puts the policy in front of `handler`, and answers preflights. */
export function withCors<H extends Handler>(handler: H, options: CorsOptions): H {
  if (options.allowedOrigins.length === 0) return handler;
  const policy = createCorsPolicy(options);
  const allowMethods = cors.allowedMethods.join(", ");
  const allowHeaders = [...cors.allowedHeaders, ...streamRequestHeaders].join(", ");
  const maxAge = String(options.maxAgeSeconds ?? 7200);
  return ((req, res) => {
    const origin = req.headers.origin;
    if (
      origin !== undefined &&
      policy.allows(origin) &&
      req.method === "OPTIONS" &&
      req.headers["access-control-request-method"] !== undefined
    ) {
      res.writeHead(204, {
        vary: "Origin",
        "access-control-allow-origin": origin,
        "access-control-allow-methods": allowMethods,
        "access-control-allow-headers": allowHeaders,
        "access-control-max-age": maxAge,
      });
      res.end();
      return;
    }
    for (const [name, value] of Object.entries(policy.responseHeaders(origin))) res.setHeader(name, value);
    handler(req, res);
  }) as H;
}
