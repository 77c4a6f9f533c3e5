import type * as http2 from "node:http2";
import type * as net from "node:net";

// When an HTTP/2 connection goes, Node closes every stream on it in one call
// (its socket's 'close' listener, socketOnClose): a reset submitted to
// nghttp2, a shutdown of the writable side and an 'close' event for each.
// That is some 15 µs a stream, all in one turn of the event loop: 56
// connections of 900 streams dropped together held the loop for 0.7 to 0.9 s,
// and every other client waited that long. Here the streams of a closed
// connection are closed in slices of a few milliseconds, a turn apart, and
// Node's own listener runs once they are all gone, to close the session as
// it always does. The socket is closed already: nothing more is sent.
//
// Node's listener is found by its name. If a Node version names it
// otherwise, nothing changes: Node closes the streams at once, as before
// (test/gradual-close.test.ts says so when that happens).

/** How long one slice of closing may run before the next turn. */
const SLICE_MS = 2;
/** Below this many streams Node's own close is short enough. */
const GRADUAL_FROM = 64;

const NGHTTP2_CANCEL = 0x8;

/** Takes over the closing of `session`'s streams when its socket closes; false when Node's listener was not found. */
export function closeGradually(session: http2.ServerHttp2Session): boolean {
  const socket = session.socket;
  const nodeOnClose = socket.listeners("close").find((f) => f.name === "socketOnClose") as
    | ((this: unknown) => void)
    | undefined;
  if (nodeOnClose === undefined) return false;
  const open = new Set<http2.ServerHttp2Stream>();
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open.add(stream);
    stream.once("close", () => open.delete(stream));
  });
  socket.removeListener("close", nodeOnClose);
  // The listener is Node's, so it runs with Node's `this`: the socket itself, not the session's proxy of it.
  socket.once("close", function (this: net.Socket) {
    const closeSession = () => nodeOnClose.call(this);
    if (open.size < GRADUAL_FROM) return closeSession();
    const streams = open.values();
    const slice = () => {
      const until = performance.now() + SLICE_MS;
      for (let n = 1; ; n++) {
        const next = streams.next();
        if (next.done === true) return closeSession();
        if (!next.value.closed) next.value.close(NGHTTP2_CANCEL);
        if ((n & 15) === 0 && performance.now() >= until) return void setImmediate(slice);
      }
    };
    slice();
  });
  return true;
}
