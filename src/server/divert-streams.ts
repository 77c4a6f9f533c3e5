import type * as http2 from "node:http2";
import type { Intake } from "../door/intake.js";

/**
 * Puts the front door in front of Node's compat layer. A server created with
 * a request listener gets one 'stream' listener from Node (setupCompat binds
 * compat's onServerStream), which builds Http2ServerRequest/Response for
 * every stream and emits 'request'. It has no way to skip a stream, so a
 * listener merely registered before it would still pay for the wrappers (and
 * their six stream listeners) on the lean road. Instead we take Node's
 * listener off and hand it to the front door, which calls it for the roads
 * that want Node's request and response: CONNECT, Expect, and the request
 * objects stay Node's own code. Should a Node version wire compat
 * differently, this throws at startup instead of serving wrong.
 */
export function divertStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  intake: Intake,
  suspicious: (stream: http2.ServerHttp2Stream) => boolean,
): void {
  type OnStream = (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    flags: number,
    rawHeaders: string[],
  ) => void;
  const compat = server.listeners("stream") as OnStream[];
  const toCompat = compat[0];
  if (compat.length !== 1 || toCompat === undefined) {
    throw new Error(`front door: expected Node's compat 'stream' listener alone, found ${compat.length} listeners`);
  }
  server.removeListener("stream", toCompat);
  server.on(
    "stream",
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) =>
      intake.stream(
        stream,
        headers,
        rawHeaders,
        () => toCompat.call(server, stream, headers, flags, rawHeaders),
        suspicious(stream),
      ),
  );
}
