import type * as net from "node:net";

// One port for every client. Cleartext: HTTP/2 with prior knowledge (what
// gRPC clients send) and HTTP/1.1 (curl, browsers, proxies) are told apart by
// the HTTP/2 connection preface, because Node's allowHTTP1 only works over
// TLS. Bytes that begin like the preface ("PRI", a method HTTP/1.1 reserves
// for it) but then differ are an HTTP/2 client's mistake, answered as HTTP/2
// answers one: GOAWAY PROTOCOL_ERROR.

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** From this many matching bytes on, the connection is HTTP/2's, right or wrong. */
const HTTP2_FROM = 3;
/** GOAWAY (RFC 9113 section 6.8) on stream 0: last stream 0, PROTOCOL_ERROR. */
const GOAWAY_PROTOCOL_ERROR = Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/**
 * Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1, then
 * puts the bytes back. The socket stays in paused mode (read(), never a
 * "data" listener): Node's HTTP/1.1 parser takes over the socket's handle and
 * would never see bytes that a flowing-mode listener had already taken.
 */
export function sniff(socket: net.Socket, timeoutMs: number, dispatch: (isHttp2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const onError = () => socket.destroy();
  const onClose = () => clearTimeout(timer);
  const stop = () => {
    clearTimeout(timer);
    socket.off("error", onError);
    socket.off("close", onClose);
  };
  const done = (isHttp2: boolean) => {
    stop();
    socket.unshift(seen);
    dispatch(isHttp2);
  };
  const onReadable = () => {
    const chunk: Buffer | null = socket.read();
    if (chunk !== null) {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const matched = matchingBytes(seen, n);
      if (matched < n) {
        if (matched < HTTP2_FROM) return done(false);
        stop();
        socket.end(GOAWAY_PROTOCOL_ERROR);
        return;
      }
      if (seen.length >= PREFACE.length) return done(true);
    }
    socket.once("readable", onReadable);
  };
  socket.on("error", onError);
  socket.on("close", onClose);
  onReadable();
}

function matchingBytes(seen: Buffer, n: number): number {
  let i = 0;
  while (i < n && seen[i] === PREFACE[i]) i++;
  return i;
}
