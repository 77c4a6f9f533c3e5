import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type StreamRequest, StreamRequestSchema, StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";

// The benchmark's own bytes on the wire: its request encoder, and a
// hand-written StreamResponse encoder for the raw node:http2 ceiling
// (protobuf-es would be the bottleneck there). Envelopes and gRPC headers
// are the tests' (test/support/wire.ts).

/** Envelope flag of the Connect protocol's end-of-stream message (JSON, carries the error if any). */
export const CONNECT_END_STREAM = 0x02;

export interface BenchRequest {
  name: string;
  /** Milliseconds; undefined leaves interval unset (server default, 2 s). */
  intervalMs: number | undefined;
  limit: number;
  startAt?: number;
}

export function encodeRequest(r: BenchRequest): Uint8Array {
  const msg = create(StreamRequestSchema, {
    name: r.name,
    limit: BigInt(r.limit),
    startAt: BigInt(r.startAt ?? 0),
  });
  if (r.intervalMs !== undefined) {
    msg.interval = {
      $typeName: "google.protobuf.Duration",
      seconds: BigInt(Math.floor(r.intervalMs / 1000)),
      nanos: (r.intervalMs % 1000) * 1_000_000,
    };
  }
  return toBinary(StreamRequestSchema, msg);
}

export function decodeRequest(bytes: Uint8Array): StreamRequest {
  return fromBinary(StreamRequestSchema, bytes);
}

/** Decodes a StreamResponse payload into the fields the checks look at. */
export function decodeResponse(payload: Uint8Array): { message: string; counter: bigint; seconds: bigint } {
  const r = fromBinary(StreamResponseSchema, payload);
  return { message: r.message, counter: r.counter, seconds: r.timestamp?.seconds ?? 0n };
}

/** Writes `n` as a protobuf varint at `off`; returns the offset after it. */
function writeVarint(buf: Buffer, off: number, n: number): number {
  let v = n;
  while (v >= 0x80) {
    buf[off++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[off++] = v;
  return off;
}

function varintSize(n: number): number {
  let size = 1;
  let v = n;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    size++;
  }
  return size;
}

/** The largest enveloped StreamResponse encodeResponseFrame() can write for a name of `nameBytes` UTF-8 bytes. */
export function maxFrameSize(nameBytes: number): number {
  return 5 + 2 * 3 + nameBytes + 60 + 10 + 2 + 2 + 10 + 5;
}

/**
 * Encodes one enveloped StreamResponse at `off` (the same bytes as
 * toBinary(StreamResponseSchema, ...) produces, field by field); returns the
 * offset after it. Counters must stay below 2^53.
 */
export function encodeResponseFrame(buf: Buffer, off: number, name: string, counter: number, ms: number): number {
  const text = `Hello ${name}, this is ${counter} time stream message.`;
  const textLen = Buffer.byteLength(text);
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  const tsLen = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
  const msgLen = 1 + varintSize(textLen) + textLen + (counter === 0 ? 0 : 1 + varintSize(counter)) + 2 + tsLen;
  buf[off] = 0;
  buf.writeUInt32BE(msgLen, off + 1);
  let p = off + 5;
  buf[p++] = 0x0a;
  p = writeVarint(buf, p, textLen);
  p += buf.write(text, p, "utf8");
  if (counter !== 0) {
    buf[p++] = 0x10;
    p = writeVarint(buf, p, counter);
  }
  buf[p++] = 0x1a;
  buf[p++] = tsLen;
  if (seconds !== 0) {
    buf[p++] = 0x08;
    p = writeVarint(buf, p, seconds);
  }
  if (nanos !== 0) {
    buf[p++] = 0x10;
    p = writeVarint(buf, p, nanos);
  }
  return p;
}
