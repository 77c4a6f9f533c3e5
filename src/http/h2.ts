import type * as http2 from "node:http2";

// HTTP/2 stream plumbing that the server and the gRPC lean path share.

/**
 * Claims an HTTP/2 stream before Node's compat layer wraps it in
 * Http2ServerRequest/Response: returns true when it took the stream.
 */
export type StreamTaker = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

/**
 * Reads and drops the rest of a request whose response is complete. connect-node
 * answers an oversize or malformed request without reading the rest; a client
 * still sending would then wait on flow control forever for a stream nobody
 * reads. Nothing is kept, so this costs bandwidth, not memory. (RST_STREAM
 * NO_ERROR would be the HTTP/2 way, but Node sends it ahead of the trailers
 * and they are lost, and Node's own client never closes such a stream.)
 */
export function discardRestOfRequest(stream: http2.Http2Stream): void {
  if (stream.destroyed || stream.readableEnded) return;
  stream.removeAllListeners("data");
  stream.on("data", () => {});
  stream.resume();
}
