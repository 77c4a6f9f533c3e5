import type * as http2 from "node:http2";

// Resetting an HTTP/2 stream the server's way. A RST_STREAM that Node
// submits while the session's socket still has a write pending waits behind
// that write, and when such a socket then closes, Node 20 loops without end
// in its send path, the process's memory growing by gigabytes a second (a
// peer that opens its windows wide, stops reading and hangs up did it:
// nodejs/node#52952 is the same family). A stream is therefore reset only on
// a connection that takes what it is sent; on one that does not, the whole
// session goes, which costs that peer nothing more than its streams.

/** Whether the session's socket has bytes the kernel did not take yet: the peer is not reading. */
export function writesPending(session: http2.Http2Session | undefined): boolean {
  const handle = (session?.socket as { _handle?: { writeQueueSize?: number } } | undefined)?._handle;
  return (handle?.writeQueueSize ?? 0) > 0;
}

/**
 * Closes `stream` with RST_STREAM `code`, or destroys its session when the
 * reset could not go out now. True when the session went with it.
 */
export function resetStream(stream: http2.Http2Stream, code: number): boolean {
  if (stream.destroyed) return false;
  const session = stream.session;
  if (writesPending(session)) {
    session?.destroy();
    return true;
  }
  stream.close(code);
  return false;
}
