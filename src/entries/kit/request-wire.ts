import { type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { type StreamRequest, StreamRequestSchema } from "../../../gen/stream/v1/stream_pb.js";

// The request message of Stream, read straight from its bytes when they are
// the plain form every client sends: each field once, in its own wire type,
// a name in ASCII, numbers below 2^53. Anything else (a field twice, an
// unknown field, UTF-8 to check, a negative or huge number, a truncated
// varint) returns undefined and goes to connect's parser, which decides it
// as it always did, errors included. protobuf-es's reflective reader took
// some 8 µs of the 60 a first message costs the server before it leaves;
// this takes well under one. The field numbers come from the generated
// schema, checked when this file loads, and test/request-wire.test.ts holds
// the result to fromBinary() over generated inputs, valid and broken.

const VARINT = 0;
const LENGTH_DELIMITED = 2;

function tagOf(schema: DescMessage, name: string, kind: ScalarType | DescMessage): number {
  const f = schema.fields.find((x) => x.name === name);
  const ok =
    f !== undefined &&
    f.number < 16 &&
    (typeof kind === "number"
      ? f.fieldKind === "scalar" && f.scalar === kind
      : f.fieldKind === "message" && f.message.typeName === kind.typeName);
  if (!ok) {
    throw new Error(`${schema.typeName}.${name} is not the field request-wire.ts reads: update it to follow the proto`);
  }
  const wire = typeof kind === "number" && kind !== ScalarType.STRING ? VARINT : LENGTH_DELIMITED;
  return (f.number << 3) | wire;
}

const NAME = tagOf(StreamRequestSchema, "name", ScalarType.STRING);
const INTERVAL = tagOf(StreamRequestSchema, "interval", DurationSchema);
const LIMIT = tagOf(StreamRequestSchema, "limit", ScalarType.UINT64);
const START_AT = tagOf(StreamRequestSchema, "start_at", ScalarType.UINT64);
const SECONDS = tagOf(DurationSchema, "seconds", ScalarType.INT64);
const NANOS = tagOf(DurationSchema, "nanos", ScalarType.INT32);

/** Where the last varint() read ended: a second result without an object for it. */
let varintEnd = 0;

/** The varint at `o`, or -1 past 7 bytes (2^49 and more) or past `end`: connect's parser takes those. */
function varint(bytes: Buffer, o: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 7 && o < end; i++) {
    const b = bytes[o++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      varintEnd = o;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

/** Stream's request from its binary form, or undefined when connect's parser must decide it. */
export function readStreamRequest(bytes: Buffer): StreamRequest | undefined {
  let name = "";
  let interval: StreamRequest["interval"];
  let limit = 0;
  let startAt = 0;
  let seen = 0;
  const end = bytes.length;
  let o = 0;
  while (o < end) {
    const tag = bytes[o++] as number;
    // One byte covers every tag here; a second field of a kind must merge, or the last wins: connect's parser.
    const bit = tag === NAME ? 1 : tag === INTERVAL ? 2 : tag === LIMIT ? 4 : tag === START_AT ? 8 : 0;
    if (bit === 0 || (seen & bit) !== 0) return undefined;
    seen |= bit;
    const value = varint(bytes, o, end);
    if (value < 0) return undefined;
    o = varintEnd;
    if (tag === LIMIT) limit = value;
    else if (tag === START_AT) startAt = value;
    else {
      if (o + value > end) return undefined;
      if (tag === NAME) {
        for (let i = o; i < o + value; i++) if ((bytes[i] as number) >= 0x80) return undefined;
        name = bytes.toString("latin1", o, o + value);
      } else {
        interval = readDuration(bytes, o, o + value);
        if (interval === undefined) return undefined;
      }
      o += value;
    }
  }
  const request: StreamRequest = {
    $typeName: "stream.v1.StreamRequest",
    name,
    limit: BigInt(limit),
    startAt: BigInt(startAt),
  };
  // As fromBinary() leaves it: absent unless it was sent.
  if (interval !== undefined) request.interval = interval;
  return request;
}

function readDuration(bytes: Buffer, o: number, end: number): StreamRequest["interval"] {
  let seconds = 0;
  let nanos = 0;
  let seen = 0;
  while (o < end) {
    const tag = bytes[o++] as number;
    const bit = tag === SECONDS ? 1 : tag === NANOS ? 2 : 0;
    if (bit === 0 || (seen & bit) !== 0) return undefined;
    seen |= bit;
    const value = varint(bytes, o, end);
    // Negative seconds or nanos are ten-byte varints; nanos past int32 wrap: connect's parser.
    if (value < 0 || (tag === NANOS && value > 0x7fffffff)) return undefined;
    o = varintEnd;
    if (tag === SECONDS) seconds = value;
    else nanos = value;
  }
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos };
}
