import type * as http from "node:http";
import type * as http2 from "node:http2";
import { sendJsonError } from "./plain-routes.js";

// What connect-node cannot take. It builds a URL from the request's authority
// before anything else, `new URL(path, "http://" + authority)`, and that throws
// inside Node's 'request' event on a Host such as "a:b": one request used to
// end the process. So the authority is checked here first, and a handler that
// throws anyway answers 400 instead of taking the process down.

type Handler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export function guardRequests<H extends Handler>(handler: H, onThrow: (e: unknown) => void): H {
  return ((req, res) => {
    const authority = req.headers[":authority"] ?? req.headers.host;
    if (typeof authority !== "string" || authority === "") {
      // HTTP/1.0 predates Host, and probes such as `GET /healthz HTTP/1.0` still
      // send none; only HTTP/1.1 makes it a must (RFC 9112, section 3.2). Such a
      // request is for this server: its own address stands in, so every road
      // (connect-node's URL included) sees one authority.
      if (req.httpVersion !== "1.0") {
        sendJsonError(res, 400, "invalid_argument", "the request has no Host header");
        return;
      }
      req.headers.host = ownAuthority(req.socket.localAddress, req.socket.localPort);
    } else if (!validAuthority(authority)) {
      sendJsonError(res, 400, "invalid_argument", "the Host header is not a host and port");
      return;
    }
    try {
      handler(req, res);
    } catch (e) {
      onThrow(e);
      if (!res.headersSent) sendJsonError(res, 400, "invalid_argument", "malformed request");
      else res.destroy();
    }
  }) as H;
}

/** "127.0.0.1:8080", "[::1]:8080": the address a connection reached, as a Host value. */
function ownAuthority(address: string | undefined, port: number | undefined): string {
  const host = address === undefined ? "localhost" : address.includes(":") ? `[${address}]` : address;
  return port === undefined ? host : `${host}:${port}`;
}

let lastValid = "";

/** Whether `authority` (a Host or :authority value) is a host and port a URL can be built from. */
export function validAuthority(authority: string): boolean {
  // Clients send the same authority call after call: parse it once.
  if (authority === lastValid) return true;
  try {
    if (new URL(`http://${authority}/`).host === "") return false;
  } catch {
    return false;
  }
  lastValid = authority;
  return true;
}
