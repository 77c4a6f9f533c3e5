import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { connectRaw, Flag, FrameType, frame, type RawFrame } from "./h2-frames.js";

// Exchanges for the fuzz suite: send whatever bytes a case made, collect
// everything the server answered, and stop a valid stream after its first
// message. Every exchange is bounded in time and reports a timeout instead
// of hanging.

export interface Http1Response {
  status: number;
  /** Header names lower-cased; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: Buffer;
}

/** Raw bytes on a fresh connection, then FIN; everything the server sent until it closed. */
export function http1Raw(
  port: number,
  bytes: Uint8Array,
  timeoutMs = 3000,
): Promise<{ raw: Buffer; timedOut: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, "127.0.0.1", () => socket.end(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ raw: Buffer.concat(chunks), timedOut: true });
    }, timeoutMs);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ raw: Buffer.concat(chunks), timedOut: false });
    });
  });
}

/**
 * The HTTP/1.1 responses in `raw`, in order: bodies by Content-Length, by
 * chunks, or up to the end. Throws on bytes that are not a response.
 */
export function parseHttp1Responses(raw: Buffer): Http1Response[] {
  const out: Http1Response[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) throw new Error(`an answer without a complete head: ${JSON.stringify(rest.toString("latin1"))}`);
    const [statusLine = "", ...lines] = rest.subarray(0, end).toString("latin1").split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
    if (match === null) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    rest = rest.subarray(end + 4);
    let body: Buffer;
    if (rest.subarray(0, 9).toString("latin1") === "HTTP/1.1 ") {
      // The answer to a HEAD: its Content-Length announces a body that never comes.
      body = Buffer.alloc(0);
    } else if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      body = rest.subarray(0, n);
      rest = rest.subarray(n);
    } else if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = rest.indexOf("\r\n");
        if (lineEnd === -1) {
          rest = Buffer.alloc(0);
          break;
        }
        const size = Number.parseInt(rest.subarray(0, lineEnd).toString("latin1"), 16);
        if (!(size > 0)) {
          rest = rest.subarray(Math.min(rest.length, lineEnd + 4));
          break;
        }
        parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
        rest = rest.subarray(lineEnd + 2 + size + 2);
      }
      body = Buffer.concat(parts);
    } else {
      body = rest;
      rest = Buffer.alloc(0);
    }
    out.push({ status: Number(match[1]), headers, body });
  }
  return out;
}

export interface Exchange {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
  /** The client stopped reading because `enough` said so: a valid stream. */
  stoppedEarly: boolean;
  /** RST_STREAM code, HTTP/2 only; 0 when the stream ended normally. */
  rstCode: number;
}

export interface RequestSpec {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** True once the body so far proves a valid stream; the client then cancels. */
  enough?: (body: Buffer) => boolean;
}

function flatten(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
}

/** One request on a fresh HTTP/1.1 connection. */
export function http1Request(url: string, spec: RequestSpec, timeoutMs = 5000): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${spec.path}`,
      { method: spec.method, headers: spec.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let stoppedEarly = false;
        res.on("data", (c: Buffer) => {
          chunks.push(c);
          if (spec.enough?.(Buffer.concat(chunks))) {
            stoppedEarly = true;
            res.destroy();
          }
        });
        const done = () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: flatten(res.headers),
            trailers: flatten(res.trailers),
            body: Buffer.concat(chunks),
            stoppedEarly,
            rstCode: 0,
          });
        res.on("end", done);
        res.on("close", done);
        res.on("error", () => {});
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no complete answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(spec.body);
  });
}

/** HTTP/2 requests on one kept session, opened again whenever the server closed it. */
export class H2Client {
  private session: http2.ClientHttp2Session | undefined;

  constructor(private readonly url: string) {}

  /**
   * One request. A stream the server refused unprocessed (REFUSED_STREAM, as
   * on a session it is closing) is tried once more on a new session, as
   * RFC 9113 section 8.7 allows.
   */
  async request(spec: RequestSpec, timeoutMs = 5000): Promise<Exchange> {
    const x = await this.once(spec, timeoutMs);
    if (x.status !== 0 || x.rstCode !== http2.constants.NGHTTP2_REFUSED_STREAM) return x;
    this.session?.destroy();
    this.session = undefined;
    return this.once(spec, timeoutMs);
  }

  private once(spec: RequestSpec, timeoutMs: number): Promise<Exchange> {
    if (this.session === undefined || this.session.closed || this.session.destroyed) {
      const session = http2.connect(this.url);
      session.on("error", () => {});
      session.on("goaway", () => {
        if (this.session === session) this.session = undefined;
      });
      this.session = session;
    }
    const session = this.session;
    return new Promise((resolve, reject) => {
      const req = session.request({ ":method": spec.method, ":path": spec.path, ...spec.headers });
      const out: Exchange = {
        status: 0,
        headers: {},
        trailers: {},
        body: Buffer.alloc(0),
        stoppedEarly: false,
        rstCode: 0,
      };
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`no complete answer within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on("response", (h) => {
        out.headers = flatten(h);
        out.status = Number(h[":status"]);
      });
      req.on("trailers", (t) => {
        out.trailers = flatten(t);
      });
      req.on("data", (c: Buffer) => {
        chunks.push(c);
        if (!out.stoppedEarly && spec.enough?.(Buffer.concat(chunks))) {
          out.stoppedEarly = true;
          req.close(http2.constants.NGHTTP2_CANCEL);
          // The server counts cancelled streams against a reset budget (--h2-max-resets): a session
          // that cancelled hundreds would be cut as a rapid-reset attacker. A new one for the next request.
          session.close();
          if (this.session === session) this.session = undefined;
        }
      });
      req.on("error", () => {});
      req.on("close", () => {
        clearTimeout(timer);
        out.body = Buffer.concat(chunks);
        out.rstCode = out.stoppedEarly ? 0 : (req.rstCode ?? 0);
        resolve(out);
      });
      req.end(spec.body);
    });
  }

  close(): void {
    this.session?.close();
  }
}

export interface RawH2Outcome {
  frames: RawFrame[];
  /** How the exchange settled: our PING acknowledged, a GOAWAY, the socket closed, or nothing in time. */
  settled: "ack" | "goaway" | "closed" | "timeout";
}

/**
 * Preface, empty SETTINGS, then `bytes`, then a PING: once the server
 * acknowledges it (frames are handled in order), it has dealt with all of
 * `bytes`; a GOAWAY or a close settles it too.
 */
export async function rawH2(port: number, bytes: Uint8Array, timeoutMs = 3000): Promise<RawH2Outcome> {
  const c = await connectRaw(port, { answerPings: true });
  const marker = Buffer.from("fuzzdone");
  c.socket.write(bytes);
  c.socket.write(frame(FrameType.PING, 0, 0, marker));
  const started = performance.now();
  let settled: RawH2Outcome["settled"] = "timeout";
  while (performance.now() - started < timeoutMs) {
    if (c.frames.some((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(marker))) {
      settled = "ack";
      break;
    }
    if (c.frames.some((f) => f.type === FrameType.GOAWAY)) {
      settled = "goaway";
      break;
    }
    if (c.socket.destroyed) {
      settled = "closed";
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  c.socket.destroy();
  return { frames: c.frames, settled };
}
