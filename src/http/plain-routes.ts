import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

// Routes that are plain HTTP rather than RPC (GET /stream, the page, health
// and metrics). connect-node calls this for every path it does not serve.

type Fallback = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** The request and response types connect-node hands over: HTTP/1.1's or HTTP/2's compatibility API. */
export type NodeRequest = Parameters<Fallback>[0];
export type NodeResponse = Parameters<Fallback>[1];
export type PlainHandler = (req: NodeRequest, res: NodeResponse) => void;

export class PlainRoutes {
  private readonly routes = new Map<string, PlainHandler>();

  /**
   * Serves `path` (exact match, query string ignored) with `handler`. With
   * `methods`, any other method gets 405 and an Allow header before the
   * handler sees it.
   */
  add(path: string, handler: PlainHandler, methods?: readonly string[]): this {
    if (methods === undefined) {
      this.routes.set(path, handler);
      return this;
    }
    const allow = methods.join(", ");
    this.routes.set(path, (req, res) => {
      if (req.method !== undefined && methods.includes(req.method)) {
        handler(req, res);
        return;
      }
      sendJsonError(res, 405, "unimplemented", `method ${req.method} not allowed on ${path}; use ${allow}`, { allow });
    });
    return this;
  }

  /** connect-node's fallback: the route for the path, or 404 with a Connect-style JSON error. */
  readonly handle = (req: NodeRequest, res: NodeResponse): void => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const route = this.routes.get(path);
    if (route !== undefined) {
      route(req, res);
      return;
    }
    sendJsonError(res, 404, "unimplemented", `no route for ${req.method} ${path}`);
  };
}

/** An error body in the Connect protocol's shape: {"code": "...", "message": "..."}. */
export function sendJsonError(
  res: NodeResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ code, message });
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
