import { type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { StreamResponseSchema } from "../../../gen/stream/v1/stream_pb.js";
import { greetingParts } from "../../core/greeting.js";

// A stream's messages as bytes, written straight from (counter, time): in the
// protobuf binary form inside its length-prefixed envelope (gRPC, gRPC-Web,
// Connect), or as canonical proto JSON (Connect JSON, NDJSON, SSE). Only the
// counter and the time change from one message to the next, so everything
// that depends on the name is encoded once per stream. The text comes from
// core/greeting.ts and the field numbers and JSON names from the generated
// StreamResponseSchema, checked when this file loads: a change to the proto
// that this encoder does not follow stops the server at start, not a client
// at its first message. test/greeting-wire.test.ts holds both forms to
// toBinary() and toJsonString().

const VARINT = 0;
const LENGTH_DELIMITED = 2;

/** A field's tag byte and JSON name, after checking that it is what this encoder writes. */
function field(
  schema: DescMessage,
  name: string,
  kind: { scalar: ScalarType } | { message: DescMessage },
): { tag: number; json: string } {
  const f = schema.fields.find((x) => x.name === name);
  const ok =
    f !== undefined &&
    f.number < 16 &&
    ("scalar" in kind
      ? f.fieldKind === "scalar" && f.scalar === kind.scalar
      : f.fieldKind === "message" && f.message.typeName === kind.message.typeName);
  if (!ok) {
    throw new Error(
      `${schema.typeName}.${name} is not the field greeting-wire.ts encodes: update it to follow the proto`,
    );
  }
  const wire = "scalar" in kind && kind.scalar !== ScalarType.STRING ? VARINT : LENGTH_DELIMITED;
  return { tag: (f.number << 3) | wire, json: f.jsonName };
}

const MESSAGE = field(StreamResponseSchema, "message", { scalar: ScalarType.STRING });
const COUNTER = field(StreamResponseSchema, "counter", { scalar: ScalarType.UINT64 });
const TIMESTAMP = field(StreamResponseSchema, "timestamp", { message: TimestampSchema });
const SECONDS = field(TimestampSchema, "seconds", { scalar: ScalarType.INT64 });
const NANOS = field(TimestampSchema, "nanos", { scalar: ScalarType.INT32 });

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The most one message takes in either form, envelope or JSON line: a name
 * of 100 code points (400 bytes of UTF-8, 800 when every one is escaped),
 * the greeting's words, 20 digits twice, a timestamp. What a batch keeps
 * free for the next message.
 */
export const MAX_MESSAGE_BYTES = 1024;

const COUNTER_KEY = `,"${COUNTER.json}":"`;
const TIMESTAMP_KEY = `,"${TIMESTAMP.json}":"`;
const QUOTE = 0x22;
const CLOSE_BRACE = 0x7d;

/** The halves of a greeting, as bytes, by their text: every name shares its second half. */
const encoded = new Map<string, Buffer>();
function bytesOf(text: string): Buffer {
  let bytes = encoded.get(text);
  if (bytes === undefined) {
    bytes = Buffer.from(text, "utf8");
    if (encoded.size < 16) encoded.set(text, bytes);
  }
  return bytes;
}

export class GreetingWire {
  private readonly prefix: Buffer;
  private readonly suffix: Buffer;
  private jsonPrefix: Buffer | undefined;
  private jsonSuffix: Buffer | undefined;

  constructor(private readonly name: string) {
    const [before, after] = greetingParts(name);
    this.prefix = Buffer.from(before, "utf8");
    this.suffix = bytesOf(after);
  }

  /** The message as a gRPC / Connect envelope: flags 0, big-endian length, then the protobuf. */
  envelope(counter: bigint, millis: number): Buffer {
    const buf = Buffer.allocUnsafe(MAX_MESSAGE_BYTES);
    return buf.subarray(0, this.envelopeInto(buf, 0, counter, millis));
  }

  /** The message as canonical proto JSON, as toJsonString() writes it with default options. */
  json(counter: bigint, millis: number): string {
    const buf = Buffer.allocUnsafe(MAX_MESSAGE_BYTES);
    return buf.toString("utf8", 0, this.jsonInto(buf, 0, counter, millis));
  }

  /** Writes the envelope at `start` (MAX_MESSAGE_BYTES must be free there); returns where it ends. */
  envelopeInto(buf: Buffer, start: number, counter: bigint, millis: number): number {
    const digits = counter.toString();
    const textBytes = this.prefix.length + digits.length + this.suffix.length;
    const seconds = Math.floor(millis / 1000);
    const nanos = (millis - seconds * 1000) * 1_000_000;
    const tsBytes = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
    const counterBytes = counter === 0n ? 0 : 1 + bigVarintSize(counter);
    const size = 1 + varintSize(textBytes) + textBytes + counterBytes + 1 + varintSize(tsBytes) + tsBytes;
    buf[start] = 0;
    buf.writeUInt32BE(size, start + 1);
    let o = start + 5;
    buf[o++] = MESSAGE.tag;
    o = writeVarint(buf, o, textBytes);
    o += this.prefix.copy(buf, o);
    o += buf.write(digits, o, "latin1");
    o += this.suffix.copy(buf, o);
    if (counter !== 0n) {
      buf[o++] = COUNTER.tag;
      o = counter <= MAX_SAFE ? writeVarint(buf, o, Number(counter)) : writeBigVarint(buf, o, counter);
    }
    buf[o++] = TIMESTAMP.tag;
    o = writeVarint(buf, o, tsBytes);
    if (seconds !== 0) {
      buf[o++] = SECONDS.tag;
      o = writeVarint(buf, o, seconds);
    }
    if (nanos !== 0) {
      buf[o++] = NANOS.tag;
      o = writeVarint(buf, o, nanos);
    }
    return o;
  }

  /** Writes the JSON at `start` (MAX_MESSAGE_BYTES must be free there), as UTF-8; returns where it ends. */
  jsonInto(buf: Buffer, start: number, counter: bigint, millis: number): number {
    if (this.jsonPrefix === undefined || this.jsonSuffix === undefined) {
      // JSON escapes character by character, so the escaped halves join around the digits.
      const [before, after] = greetingParts(this.name);
      this.jsonPrefix = Buffer.from(`{"${MESSAGE.json}":${JSON.stringify(before).slice(0, -1)}`, "utf8");
      this.jsonSuffix = bytesOf(`${JSON.stringify(after).slice(1)}`);
    }
    const digits = counter.toString();
    let o = start + this.jsonPrefix.copy(buf, start);
    o += buf.write(digits, o, "latin1");
    o += this.jsonSuffix.copy(buf, o);
    if (counter !== 0n) {
      o += buf.write(COUNTER_KEY, o, "latin1");
      o += buf.write(digits, o, "latin1");
      buf[o++] = QUOTE;
    }
    o += buf.write(TIMESTAMP_KEY, o, "latin1");
    o += buf.write(timestampJson(millis), o, "latin1");
    buf[o++] = QUOTE;
    buf[o++] = CLOSE_BRACE;
    return o;
  }
}

/** The last second timestampJson() wrote, and its text: a stream's messages mostly share one. */
let cachedSecond = Number.NaN;
let cachedPrefix = "";

/**
 * RFC 3339 as proto JSON writes a Timestamp: no fraction at a whole second,
 * else milliseconds here. Date's own formatting showed as the largest single
 * cost of a fast JSON stream, so only the milliseconds are written per message.
 */
function timestampJson(millis: number): string {
  const second = Math.floor(millis / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const ms = millis - second * 1000;
  if (ms === 0) return `${cachedPrefix}Z`;
  return `${cachedPrefix}.${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}Z`;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function bigVarintSize(n: bigint): number {
  if (n <= MAX_SAFE) return varintSize(Number(n));
  let size = 1;
  while (n >= 0x80n) {
    n >>= 7n;
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

function writeBigVarint(buf: Buffer, o: number, n: bigint): number {
  while (n >= 0x80n) {
    buf[o++] = Number(n & 0x7fn) | 0x80;
    n >>= 7n;
  }
  buf[o++] = Number(n);
  return o;
}
