import { answerJson, type Exchange } from "../http/exchange.js";
import type { Policy } from "./policies.js";

// The authority a request names (Host, or HTTP/2's :authority) must be a host
// and port a URL can be built from: connect-node builds one,
// `new URL(path, "http://" + authority)`, before anything else, and a Host
// such as "a:b" used to throw inside Node's 'request' event and end the
// process. Every road gets the same 400 for it.

export const authorityPolicy: Policy = (x: Exchange) => {
  const { headers, version } = x.head;
  const authority = headers[":authority"] ?? headers.host;
  if (typeof authority === "string" && authority !== "") {
    if (validAuthority(authority)) return undefined;
    answerJson(x, 400, "invalid_argument", "the Host header is not a host and port");
    return "answered";
  }
  // HTTP/1.0 predates Host, and probes such as `GET /healthz HTTP/1.0` still
  // send none; only HTTP/1.1 makes it a must (RFC 9112, section 3.2). Such a
  // request is for this server: its own address stands in, so every road
  // (connect-node's URL included) sees one authority.
  if (version === "1.0" && x.transport.kind === "node") {
    const socket = x.transport.req.socket;
    headers.host = ownAuthority(socket.localAddress, socket.localPort);
    return undefined;
  }
  answerJson(x, 400, "invalid_argument", "the request has no Host header");
  return "answered";
};

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
