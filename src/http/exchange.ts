import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { CallInfo } from "../core/stream-service.js";

// One request as the front door hands it to a road: what it asked (read once,
// at birth), who asked (the call record), what every answer must carry (the
// headers the policies chose), and how to answer: the raw HTTP/2 stream, for
// the road that writes its own frames, or Node's request and response.

type Fallback = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** The request and response Node's HTTP/1.1 server or HTTP/2 compatibility layer hands over, as connect-node types them. */
export type NodeRequest = Parameters<Fallback>[0];
export type NodeResponse = Parameters<Fallback>[1];

export type HttpVersion = "1.0" | "1.1" | "2.0";

/** What the front door reads of a request, once. */
export interface RequestHead {
  readonly version: HttpVersion;
  readonly method: string;
  /** The path, without the query string. */
  readonly path: string;
  /** The path and query string as sent (HTTP/1.1's request target, HTTP/2's :path). */
  readonly target: string;
  readonly contentType: string | undefined;
  readonly headers: http.IncomingHttpHeaders;
  /** A body follows the head (HTTP/2: no END_STREAM on the headers; HTTP/1.1: a length or chunks). */
  readonly hasBody: boolean;
}

export type Transport =
  | {
      readonly kind: "h2";
      readonly stream: http2.ServerHttp2Stream;
      readonly headers: http2.IncomingHttpHeaders;
      /** The header list as sent, name and value in turn: what the header-size policy measures. */
      readonly rawHeaders: readonly string[];
    }
  | { readonly kind: "node"; readonly req: NodeRequest; readonly res: NodeResponse };

export interface Exchange {
  readonly head: RequestHead;
  /** Who is calling: made at birth for every request; a stream's log lines and span come from it. */
  readonly call: CallInfo;
  /** Headers every answer to this request carries (CORS, x-request-id, a challenge), set by the policies. */
  readonly responseHeaders: Record<string, string>;
  /** How to answer. A raw HTTP/2 stream becomes a request and response when its road wants those. */
  transport: Transport;
  /** The protocol's timeout of an RPC, in ms from the request's headers, once the deadline policy read it. */
  timeoutMs: number | undefined;
}

/** A plain answer of the JSON error shape, {"code", "message"}, on either transport. */
export function answerJson(
  x: Exchange,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const t = x.transport;
  if (t.kind === "node") {
    sendJsonError(t.res, status, code, message, { ...x.responseHeaders, ...headers });
    return;
  }
  const body = JSON.stringify({ code, message });
  if (t.stream.destroyed || t.stream.headersSent) return;
  t.stream.respond({
    ":status": status,
    ...x.responseHeaders,
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  t.stream.end(body);
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

/** Whether anything of the answer has left (its status line or HEADERS frame). */
export function answerStarted(x: Exchange): boolean {
  const t = x.transport;
  return t.kind === "node" ? t.res.headersSent : t.stream.headersSent || t.stream.destroyed;
}

/** An answer with no body (a preflight's 204), on either transport. */
export function answerEmpty(x: Exchange, status: number, headers: Record<string, string>): void {
  const t = x.transport;
  if (t.kind === "node") {
    t.res.writeHead(status, headers);
    t.res.end();
    return;
  }
  if (t.stream.destroyed || t.stream.headersSent) return;
  t.stream.respond({ ":status": status, ...headers }, { endStream: true });
}
