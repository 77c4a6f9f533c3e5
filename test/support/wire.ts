import type * as http2 from "node:http2";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { StreamRequestSchema } from "../../gen/stream/v1/stream_pb.js";

// The bytes of the wire as the tests and the benchmark write and read them:
// the 5-byte envelope of gRPC, gRPC-Web and Connect streaming, and the
// headers of a gRPC call. Written once, so that a test sending something
// malformed says so in its arguments rather than in a copy of its own that
// may differ by accident. Nothing here comes from src/: a test that encoded
// with the server's own code could not catch the server's mistakes.

export const streamPath = "/stream.v1.StreamService/Stream";

/** One envelope of a body: its flags byte and its payload. */
export interface Envelope {
  flags: number;
  data: Buffer;
}

/** `payload` behind the 5-byte prefix: flags, then the big-endian length, which `length` lets a test lie about. */
export function envelope(payload: Uint8Array, flags = 0, length = payload.byteLength): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(length, 1);
  return Buffer.concat([head, payload]);
}

/** A StreamRequest in an envelope, encoded by protobuf-es. */
export function requestEnvelope(init: MessageInitShape<typeof StreamRequestSchema>, flags = 0): Buffer {
  return envelope(toBinary(StreamRequestSchema, create(StreamRequestSchema, init)), flags);
}

/** The complete envelopes in `body`, and how many bytes came after the last of them. */
export function splitEnvelopes(body: Buffer): { envelopes: Envelope[]; leftover: number } {
  const envelopes: Envelope[] = [];
  let rest = body;
  while (rest.length >= 5 && rest.length >= 5 + rest.readUInt32BE(1)) {
    const n = rest.readUInt32BE(1);
    envelopes.push({ flags: rest[0] ?? 0, data: rest.subarray(5, 5 + n) });
    rest = rest.subarray(5 + n);
  }
  return { envelopes, leftover: rest.length };
}

/**
 * Splits a byte stream into envelopes, across DATA chunks of any size.
 * onMessage gets each envelope's flags and a view of its payload, valid only
 * during the call (no copy unless the envelope straddled two chunks): the
 * benchmark's client reads millions of them.
 */
export function createEnvelopeReader(onMessage: (flags: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer | undefined;
  return (chunk) => {
    const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    pending = undefined;
    let off = 0;
    while (buf.length - off >= 5) {
      const len = buf.readUInt32BE(off + 1);
      if (buf.length - off - 5 < len) break;
      onMessage(buf[off] ?? 0, buf.subarray(off + 5, off + 5 + len));
      off += 5 + len;
    }
    if (off < buf.length) pending = Buffer.from(buf.subarray(off));
  };
}

/**
 * The headers of a gRPC call on Stream, as node:http2 takes them. `extra`
 * adds headers or replaces ours (":path", "content-type"); one given as
 * undefined is left out.
 */
export function grpcRequestHeaders(extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  const headers = {
    ":method": "POST",
    ":path": streamPath,
    "content-type": "application/grpc",
    te: "trailers",
    ...extra,
  };
  return Object.fromEntries(Object.entries(headers).filter(([, value]) => value !== undefined));
}
