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

const COUNTER_KEY = Buffer.from(`,"${COUNTER.json}":"`, "latin1");
const TIMESTAMP_KEY = Buffer.from(`,"${TIMESTAMP.json}":"`, "latin1");
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
    // A counter past 2^53 (a start_at near the top of uint64) takes the bigint path; any other is a number.
    const small = counter <= MAX_SAFE;
    const n = small ? Number(counter) : 0;
    const digits = small ? digitCount(n) : counter.toString().length;
    const { prefix, suffix } = this;
    const textBytes = prefix.length + digits + suffix.length;
    const seconds = Math.floor(millis / 1000);
    const nanos = (millis - seconds * 1000) * 1_000_000;
    const tsBytes = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
    const counterBytes = counter === 0n ? 0 : 1 + (small ? varintSize(n) : bigVarintSize(counter));
    const size = 1 + varintSize(textBytes) + textBytes + counterBytes + 1 + varintSize(tsBytes) + tsBytes;
    buf[start] = 0;
    buf[start + 1] = size >>> 24;
    buf[start + 2] = (size >>> 16) & 0xff;
    buf[start + 3] = (size >>> 8) & 0xff;
    buf[start + 4] = size & 0xff;
    let o = start + 5;
    buf[o++] = MESSAGE.tag;
    o = writeVarint(buf, o, textBytes);
    o = copyInto(prefix, buf, o);
    o = small ? writeDigits(buf, o, n, digits) : o + buf.write(counter.toString(), o, "latin1");
    o = copyInto(suffix, buf, o);
    if (counter !== 0n) {
      buf[o++] = COUNTER.tag;
      o = small ? writeVarint(buf, o, n) : writeBigVarint(buf, o, counter);
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
    const small = counter <= MAX_SAFE;
    const n = small ? Number(counter) : 0;
    const digits = small ? "" : counter.toString();
    const count = small ? digitCount(n) : digits.length;
    let o = copyInto(this.jsonPrefix, buf, start);
    o = small ? writeDigits(buf, o, n, count) : o + buf.write(digits, o, "latin1");
    o = copyInto(this.jsonSuffix, buf, o);
    if (counter !== 0n) {
      o = copyInto(COUNTER_KEY, buf, o);
      o = small ? writeDigits(buf, o, n, count) : o + buf.write(digits, o, "latin1");
      buf[o++] = QUOTE;
    }
    o = copyInto(TIMESTAMP_KEY, buf, o);
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

// The helpers below take a fast path for values below 2^31, where V8 keeps
// integers untagged and division is a shift or an integer op: with them a
// message encodes in a third of the time Math.floor and Buffer's own copy
// and write took (about 100 ns against 290, measured in a loop).
const INT = 0x80000000;

function varintSize(n: number): number {
  if (n < INT) return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function bigVarintSize(n: bigint): number {
  let size = 1;
  while (n >= 0x80n) {
    n >>= 7n;
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, o: number, n: number): number {
  if (n < INT) {
    while (n >= 0x80) {
      buf[o++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
  } else {
    while (n >= 0x80) {
      buf[o++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
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

/** Decimal digits of a safe integer. */
function digitCount(n: number): number {
  let count = 1;
  if (n < INT) {
    while (n >= 10) {
      n = (n / 10) | 0;
      count++;
    }
  } else {
    while (n >= 10) {
      n = Math.floor(n / 10);
      count++;
    }
  }
  return count;
}

/** Writes the `count` decimal digits of a safe integer at `o`, as ASCII; returns where they end. */
function writeDigits(buf: Buffer, o: number, n: number, count: number): number {
  for (let i = o + count - 1; i >= o; i--) {
    const q = n < INT ? (n / 10) | 0 : Math.floor(n / 10);
    buf[i] = 0x30 + (n - q * 10);
    n = q;
  }
  return o + count;
}

/** Buffer.copy() costs more in its checks than a short copy by hand. */
function copyInto(src: Buffer, buf: Buffer, o: number): number {
  const length = src.length;
  for (let i = 0; i < length; i++) buf[o + i] = src[i] as number;
  return o + length;
}
