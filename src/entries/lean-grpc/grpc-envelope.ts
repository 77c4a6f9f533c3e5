import { toBinary } from "@bufbuild/protobuf";
import { type StreamResponse, StreamResponseSchema } from "../../../gen/stream/v1/stream_pb.js";
import { envelopeTooLarge, incompleteEnvelope } from "./connect-internals.js";

// gRPC length-prefixed messages for the fast path: the response written
// straight into its envelope (one buffer per message, no serialize-copy-
// envelope), and the request split the way connect's handler splits it.

/**
 * One StreamResponse in its gRPC envelope (flags 0, big-endian length). The
 * protobuf is written by hand into the envelope's own buffer, field by field
 * in number order as protobuf-es writes it, proto3 defaults left out;
 * test/grpc-envelope.test.ts holds it to toBinary(). Values the hand encoder
 * does not cover (negative or huge numbers, unknown fields) take toBinary().
 */
export function encodeResponse(msg: StreamResponse): Buffer {
  const ts = msg.timestamp;
  const counter = msg.counter;
  const seconds = ts?.seconds ?? 0n;
  const nanos = ts?.nanos ?? 0;
  if (
    counter < 0n ||
    counter > maxSafe ||
    seconds < 0n ||
    seconds > maxSafe ||
    nanos < 0 ||
    (msg as { $unknown?: unknown }).$unknown !== undefined ||
    (ts as { $unknown?: unknown } | undefined)?.$unknown !== undefined
  ) {
    return envelope(toBinary(StreamResponseSchema, msg));
  }
  const c = Number(counter);
  const s = Number(seconds);
  const textBytes = msg.message === "" ? 0 : Buffer.byteLength(msg.message, "utf8");
  const tsBytes = ts === undefined ? 0 : (s === 0 ? 0 : 1 + varintSize(s)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
  const size =
    (textBytes === 0 ? 0 : 1 + varintSize(textBytes) + textBytes) +
    (c === 0 ? 0 : 1 + varintSize(c)) +
    (ts === undefined ? 0 : 1 + varintSize(tsBytes) + tsBytes);
  const buf = Buffer.allocUnsafe(5 + size);
  buf[0] = 0;
  buf.writeUInt32BE(size, 1);
  let o = 5;
  if (textBytes !== 0) {
    buf[o++] = 0x0a; // field 1, length-delimited
    o = writeVarint(buf, o, textBytes);
    o += buf.write(msg.message, o, textBytes, "utf8");
  }
  if (c !== 0) {
    buf[o++] = 0x10; // field 2, varint
    o = writeVarint(buf, o, c);
  }
  if (ts !== undefined) {
    buf[o++] = 0x1a; // field 3, length-delimited
    o = writeVarint(buf, o, tsBytes);
    if (s !== 0) {
      buf[o++] = 0x08; // Timestamp.seconds
      o = writeVarint(buf, o, s);
    }
    if (nanos !== 0) {
      buf[o++] = 0x10; // Timestamp.nanos
      o = writeVarint(buf, o, nanos);
    }
  }
  return buf;
}

const maxSafe = BigInt(Number.MAX_SAFE_INTEGER);

/** A payload in a gRPC envelope. */
export function envelope(payload: Uint8Array, flags = 0): Buffer {
  const buf = Buffer.allocUnsafe(5 + payload.byteLength);
  buf[0] = flags;
  buf.writeUInt32BE(payload.byteLength, 1);
  buf.set(payload, 5);
  return buf;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, o: number, n: number): number {
  while (n >= 0x80) {
    buf[o++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[o++] = n;
  return o;
}

export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Splits a request body into envelopes as connect's transformSplitEnvelope
 * does: every chunk is decoded as far as it goes before any envelope of it is
 * looked at, so an oversize length prefix fails the call even when an earlier
 * envelope in the same chunk was complete. Holds at most one envelope plus a
 * header: an envelope may announce at most readMaxBytes.
 */
export class EnvelopeSplitter {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private pending: { flags: number; length: number } | undefined;

  constructor(private readonly readMaxBytes: number) {}

  /** The envelopes this chunk completes; throws RESOURCE_EXHAUSTED for an oversize one. */
  push(chunk: Buffer): Envelope[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Envelope[] = [];
    for (;;) {
      if (this.pending === undefined) {
        if (this.buffered < 5) break;
        const head = this.take(5);
        const length = head.readUInt32BE(1);
        if (length > this.readMaxBytes) throw envelopeTooLarge(length, this.readMaxBytes);
        this.pending = { flags: head[0] ?? 0, length };
      }
      if (this.buffered < this.pending.length) break;
      out.push({ flags: this.pending.flags, data: this.take(this.pending.length) });
      this.pending = undefined;
    }
    return out;
  }

  /**
   * At the end of the body: throws INVALID_ARGUMENT if bytes are left over.
   * Like connect, a length prefix whose payload never came is no error here
   * (nothing is buffered): the call then fails for the missing message.
   */
  end(): void {
    if (this.buffered > 0) throw incompleteEnvelope();
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks.length = 0;
    this.buffered -= n;
    if (this.buffered > 0) this.chunks.push(all.subarray(n));
    return all.subarray(0, n);
  }
}
