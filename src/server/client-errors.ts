import type * as stream from "node:stream";
import type { Logger } from "../ops/log.js";

// What a client gets whose request Node's HTTP/1.1 parser gave up on, in
// the JSON error shape of every other answer, with the status Node's own
// default handler would pick: 408 for a head or body that came too slowly,
// 431 for a head (a long query string among it) past the size limit, 400
// for the rest.

export function onClientError(logger: Logger) {
  return (err: Error & { code?: string }, socket: stream.Duplex): void => {
    logger.debug("http1 client error", { error: err.message, code: err.code });
    if (socket.writable) socket.end(clientErrorResponse(err.code));
    else socket.destroy();
  };
}

function clientErrorResponse(code: string | undefined): string {
  const [status, reason, body] =
    code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request Timeout", { code: "deadline_exceeded", message: "the request did not arrive in time" }]
      : code === "HPE_HEADER_OVERFLOW"
        ? [
            431,
            "Request Header Fields Too Large",
            { code: "resource_exhausted", message: "the request line and headers are too large" },
          ]
        : [400, "Bad Request", { code: "invalid_argument", message: "malformed HTTP request" }];
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`
  );
}
