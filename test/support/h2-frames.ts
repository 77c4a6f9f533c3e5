import type * as http2 from "node:http2";
import * as net from "node:net";

// Raw HTTP/2 frames (RFC 9113 section 4.1), for peers that no HTTP/2 library
// would let us be: floods, resets, frames a polite client never sends. Header
// blocks use HPACK's static table and literals without indexing only, so
// every block decodes on its own whatever came before.

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.byteLength, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** SETTINGS with the given (id, value) pairs; none is the empty SETTINGS every client starts with. */
export function settings(values: Array<[id: number, value: number]> = []): Buffer {
  const payload = Buffer.alloc(6 * values.length);
  values.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

export function rstStream(streamId: number, code: number = ErrorCode.CANCEL): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
}

export function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment & 0x7fffffff);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

export function ping(data = Buffer.alloc(8)): Buffer {
  return frame(FrameType.PING, 0, 0, data);
}

/** An HPACK string literal, not Huffman-coded. */
function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([hpackInteger(bytes.length, 7, 0x00), bytes]);
}

function hpackInteger(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** A literal with incremental indexing (RFC 7541 section 6.2.1): the field enters the decoder's dynamic table. */
export function hpackIndexedLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** An indexed field (RFC 7541 section 6.1); 62 is the newest entry of the dynamic table. */
export function hpackIndexed(index: number): Buffer {
  return hpackInteger(index, 7, 0x80);
}

/** A header block: each field a literal without indexing and with a literal name. */
export function headerBlock(fields: Array<[name: string, value: string]>): Buffer {
  return Buffer.concat(
    fields.map(([name, value]) => Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)])),
  );
}

/**
 * `headers` as node:http2 takes them (wire.ts's grpcRequestHeaders(), say),
 * as the fields a client library sends: :method, :scheme http, :path,
 * :authority localhost, then the rest in order; undefined ones left out.
 */
export function headerFields(headers: http2.OutgoingHttpHeaders): Array<[name: string, value: string]> {
  const {
    ":method": method = "GET",
    ":scheme": scheme = "http",
    ":path": path = "/",
    ":authority": authority = "localhost",
    ...rest
  } = headers;
  const fields: Array<[string, string]> = [
    [":method", String(method)],
    [":scheme", String(scheme)],
    [":path", String(path)],
    [":authority", String(authority)],
  ];
  for (const [name, value] of Object.entries(rest)) if (value !== undefined) fields.push([name, String(value)]);
  return fields;
}

/** HEADERS for a request, with END_HEADERS, and END_STREAM unless a body follows. */
export function requestHeaders(
  streamId: number,
  fields: Array<[name: string, value: string]>,
  options: { endStream?: boolean } = {},
): Buffer {
  const flags = Flag.END_HEADERS | (options.endStream === false ? 0 : Flag.END_STREAM);
  return frame(FrameType.HEADERS, flags, streamId, headerBlock(fields));
}

/** A GET for `path`: the smallest request a server opens a stream for. */
export function getRequest(streamId: number, path: string): Buffer {
  return requestHeaders(streamId, headerFields({ ":method": "GET", ":path": path }));
}

export interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** What a GOAWAY says (RFC 9113 section 6.8): the last stream the server took, and its error code. */
export interface Goaway {
  lastStreamId: number;
  code: number;
}

function parseGoaway(f: RawFrame): Goaway {
  return { lastStreamId: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4) };
}

/** The error code of every GOAWAY the server sent, in order. */
export function goaways(c: { readonly frames: readonly RawFrame[] }): number[] {
  return c.frames.filter((f) => f.type === FrameType.GOAWAY).map((f) => parseGoaway(f).code);
}

/** The first GOAWAY the server sent; undefined while none came. */
export function firstGoaway(c: { readonly frames: readonly RawFrame[] }): Goaway | undefined {
  const f = c.frames.find((f) => f.type === FrameType.GOAWAY);
  return f === undefined ? undefined : parseGoaway(f);
}

/** A raw h2c connection: writes what it is given, and parses the frames the server sends. */
export interface RawH2 {
  readonly socket: net.Socket;
  readonly frames: RawFrame[];
  /** The GOAWAY's error code once one arrived. */
  goawayCode(): number | undefined;
  /** Resolves when the server closed or reset the connection (or it errored). */
  readonly closed: Promise<void>;
}

export interface RawOptions {
  /** Sent first. Default the preface and an empty SETTINGS. */
  first?: Buffer;
  /** ACK every PING, as any HTTP/2 library does. Default false: a raw peer answers nothing. */
  answerPings?: boolean;
}

export function connectRaw(port: number, options: RawOptions = {}): Promise<RawH2> {
  const first = options.first ?? Buffer.concat([PREFACE, settings()]);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const frames: RawFrame[] = [];
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) break;
        const f: RawFrame = {
          type: pending[3] ?? 0,
          flags: pending[4] ?? 0,
          streamId: pending.readUInt32BE(5) & 0x7fffffff,
          payload: pending.subarray(9, 9 + length),
        };
        frames.push(f);
        if (options.answerPings && f.type === FrameType.PING && (f.flags & Flag.ACK) === 0 && socket.writable) {
          socket.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
        }
        pending = pending.subarray(9 + length);
      }
    });
    const closed = new Promise<void>((done) => {
      socket.once("close", () => done());
    });
    socket.on("error", () => {});
    socket.once("connect", () => {
      socket.write(first);
      resolve({
        socket,
        frames,
        closed,
        goawayCode: () => firstGoaway({ frames })?.code,
      });
    });
    socket.once("error", reject);
  });
}
