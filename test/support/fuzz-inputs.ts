import fc from "fast-check";
import { FrameType, frame, getRequest, headerBlock } from "./h2-frames.js";
import { envelope } from "./wire.js";

// What the fuzz suite throws at the server: random bytes, valid requests
// mutated byte by byte, and structured inputs with every field out of line.

const encoder = new TextEncoder();

/** A byte-level edit of a valid input. */
type Mutation =
  | { op: "replace"; at: number; byte: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; length: number }
  | { op: "duplicate"; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("replace" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
      fc.constantFrom(
        ...["\r\n", "\n", "\0", ":", " ", "%00", "\r\n\r\n", "\u00ff", "\ud83d\ude00"].map((s) => encoder.encode(s)),
      ),
    ),
  }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("duplicate" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
);

function mutate(input: Uint8Array, edits: Mutation[]): Uint8Array {
  let b = Buffer.from(input);
  for (const m of edits) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.op) {
      case "replace":
        if (b.length > 0) b[at] = m.byte;
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case "delete":
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
        break;
      case "duplicate":
        b = Buffer.concat([b.subarray(0, at + m.length), b.subarray(at, at + m.length), b.subarray(at + m.length)]);
        break;
    }
  }
  return b;
}

/** `base` with one to six byte-level edits. */
export function mutated(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 6 })).map(([b, edits]) => mutate(b, edits));
}

const connectJson = (json: string) => envelope(encoder.encode(json));

// ---- HTTP/1.1 ----

const validHeads: Uint8Array[] = [
  "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
  "GET /stream?name=fuzz&limit=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
  "GET /stream?limit=2&interval=0s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nLast-Event-ID: 0\r\n\r\n",
  "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
  "OPTIONS /stream.v1.StreamService/Stream HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:1\r\nAccess-Control-Request-Method: POST\r\n\r\n",
  "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
].map((s) => encoder.encode(s));

const connectPost = (() => {
  const body = connectJson('{"name":"fuzz","limit":"1"}');
  return Buffer.concat([
    encoder.encode(
      `POST /stream.v1.StreamService/Stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/connect+json\r\nContent-Length: ${body.length}\r\n\r\n`,
    ),
    body,
  ]);
})();

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
const anyText = fc.string({ unit: "binary", maxLength: 40 });

/** A request head of its own making: every part may be wrong. */
const structuredHead: fc.Arbitrary<Uint8Array> = fc
  .record({
    method: fc.oneof(
      fc.constantFrom("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PRI"),
      token,
      anyText,
    ),
    target: fc.oneof(
      fc.constantFrom("/", "/healthz", "/readyz", "/metrics", "/stream", "/stream.v1.StreamService/Stream", "*"),
      fc.webPath(),
      anyText,
    ),
    version: fc.oneof(
      fc.constantFrom("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.10", "http/1.1"),
      anyText,
    ),
    headers: fc.array(
      fc.tuple(
        fc.oneof(
          fc.constantFrom(
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Content-Type",
            "Expect",
            "Connection",
            "Upgrade",
            "Accept",
          ),
          token,
          anyText,
        ),
        fc.oneof(fc.constantFrom("0", "-1", "chunked", "100-continue", "application/grpc-web+proto", "h2c"), anyText),
      ),
      { maxLength: 6 },
    ),
  })
  .map(({ method, target, version, headers }) =>
    encoder.encode(`${method} ${target} ${version}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`),
  );

/** HTTP/1.1 request bytes: random, mutated from valid requests, or built wrong field by field. */
export const http1Input: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.concat([b, encoder.encode("\r\n\r\n")])),
  mutated(fc.constantFrom(...validHeads, connectPost)),
  structuredHead,
);

// ---- HTTP/2 frames ----

const streamId = fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 0x7fffffff), fc.integer({ min: 0, max: 0x7fffffff }));

const randomFrame: fc.Arbitrary<Buffer> = fc
  .record({
    type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 })),
    flags: fc.integer({ min: 0, max: 255 }),
    streamId,
    payload: fc.uint8Array({ maxLength: 64 }),
  })
  .map(({ type, flags, streamId, payload }) => frame(type, flags, streamId, payload));

/** A frame whose length field lies about its payload. */
const lyingFrame: fc.Arbitrary<Buffer> = fc
  .tuple(randomFrame, fc.integer({ min: 0, max: 0xffffff }))
  .map(([f, length]) => {
    const copy = Buffer.from(f);
    copy.writeUIntBE(length, 0, 3);
    return copy;
  });

const validOpening = fc.constantFrom(
  getRequest(1, "/healthz"),
  getRequest(1, "/stream?name=fuzz&limit=1"),
  frame(
    FrameType.HEADERS,
    0x4,
    1,
    headerBlock([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/stream.v1.StreamService/Stream"],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
    ]),
  ),
);

/** Bytes after the preface and SETTINGS: a few frames, random or lying, maybe after a valid request. */
export const h2Input: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.option(validOpening, { nil: undefined }),
    fc.array(fc.oneof({ weight: 4, arbitrary: randomFrame }, { weight: 1, arbitrary: lyingFrame }), {
      minLength: 1,
      maxLength: 8,
    }),
  )
  .map(([opening, frames]) => Buffer.concat([...(opening ? [opening] : []), ...frames]));

// ---- protobuf ----

function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));

/** A StreamRequest that asks for one message: what a valid case sends. */
export const validRequest = Buffer.concat([tag(1, 2), varint(4n), encoder.encode("fuzz"), tag(3, 0), varint(1n)]);

/** A varint of `bytes` bytes, longer than any the format allows past 10. */
const overlongVarint = fc
  .integer({ min: 10, max: 20 })
  .map((bytes) => Buffer.from(Array.from({ length: bytes }, (_, i) => (i === bytes - 1 ? 0x01 : 0xff))));

const invalidUtf8 = fc.constantFrom(
  [0xff],
  [0xc3, 0x28],
  [0xed, 0xa0, 0x80],
  [0xc0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
);

/** Protobuf bytes for StreamRequest: random, with invalid UTF-8 in name, huge or overlong varints, lying lengths. */
export const protobufInput: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  mutated(fc.constant(validRequest)),
  fc.tuple(fc.string({ maxLength: 8 }), invalidUtf8, fc.string({ maxLength: 8 })).map(([a, bad, b]) => {
    const name = Buffer.concat([encoder.encode(a), Buffer.from(bad), encoder.encode(b)]);
    return Buffer.concat([tag(1, 2), varint(BigInt(name.length)), name, tag(3, 0), varint(1n)]);
  }),
  fc
    .tuple(fc.constantFrom(3, 4), fc.bigInt({ min: 0n, max: 2n ** 70n }))
    .map(([field, n]) => Buffer.concat([tag(field, 0), varint(n), tag(3, 0), varint(1n)])),
  fc.tuple(fc.constantFrom(1, 2, 3, 4, 99), overlongVarint).map(([field, v]) => Buffer.concat([tag(field, 0), v])),
  fc
    .tuple(fc.constantFrom(1, 2, 5), fc.bigInt({ min: 0n, max: 2n ** 64n }), fc.uint8Array({ maxLength: 8 }))
    .map(([field, length, bytes]) => Buffer.concat([tag(field, 2), varint(length), bytes])),
  fc
    .tuple(fc.integer({ min: 1, max: 2 ** 29 - 1 }), fc.integer({ min: 0, max: 7 }), fc.uint8Array({ maxLength: 12 }))
    .map(([field, wire, bytes]) => Buffer.concat([tag(field, wire), bytes])),
);

/** A request body of envelopes: each with any flags and a length that may lie; the whole maybe cut short. */
export const envelopesInput: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.array(
      fc.record({
        flags: fc.oneof(fc.constantFrom(0, 1, 2, 0x80, 0x81), fc.integer({ min: 0, max: 255 })),
        payload: fc.oneof(fc.constant(validRequest), protobufInput),
        lengthDelta: fc.oneof(
          { weight: 2, arbitrary: fc.constant(0) },
          { weight: 2, arbitrary: fc.integer({ min: -4, max: 4 }) },
          { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
        ),
      }),
      { minLength: 0, maxLength: 3 },
    ),
    fc.option(fc.nat(), { nil: undefined }),
  )
  .map(([envelopes, cut]) => {
    const body = Buffer.concat(
      envelopes.map((e) =>
        envelope(e.payload, e.flags, Math.max(0, Math.min(0xffffffff, e.payload.byteLength + e.lengthDelta))),
      ),
    );
    return cut === undefined || body.length === 0 ? body : body.subarray(0, cut % body.length);
  });

// ---- Connect JSON ----

const deep = fc
  .integer({ min: 1, max: 3000 })
  .chain((depth) =>
    fc.constantFrom(
      `{"name":${"[".repeat(depth)}${"]".repeat(depth)}}`,
      `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`,
      `{"interval":${'{"seconds":'.repeat(depth)}1${"}".repeat(depth)}}`,
      "[".repeat(depth),
    ),
  );

const oddValue = fc.constantFrom(
  '"18446744073709551615"',
  '"18446744073709551616"',
  "-1",
  "1e400",
  '"0x10"',
  "1.5",
  "null",
  "true",
  '"\\ud800"',
  '"\\u0000"',
  '"1e9s"',
  '"-0s"',
  '"3601s"',
  '"0.0000000001s"',
  '"999999999999999999999s"',
  "{}",
  "[]",
);

const oddFields = fc
  .array(fc.tuple(fc.constantFrom("name", "interval", "limit", "startAt", "start_at", "unknown", ""), oddValue), {
    maxLength: 4,
  })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`);

/** Connect JSON request messages: junk, deep nesting, fields with the wrong values. */
export const connectJsonInput: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.json(),
    fc.string({ maxLength: 60 }),
    deep,
    oddFields,
    mutated(fc.constant(encoder.encode('{"name":"fuzz","limit":"1"}'))).map((b) => Buffer.from(b).toString("latin1")),
  )
  .map((json) => encoder.encode(json));

// ---- GET /stream query strings ----

const queryValue = fc.oneof(
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
  fc.constantFrom(
    "%00",
    "%",
    "%zz",
    "%ff",
    "%ed%a0%80",
    "%c0%80",
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1e3",
    "0s",
    "0.1s",
    "3601s",
    "x%00y",
    "%E2%80%A8",
  ),
  fc.integer({ min: 100, max: 20_000 }).map((n) => "a".repeat(n)),
  fc.integer({ min: 20_000, max: 200_000 }).map((n) => "%41".repeat(Math.floor(n / 3))),
);

/** A query string for GET /stream, from valid to very long; with or without a Last-Event-ID for SSE. */
export const queryInput = fc.record({
  pairs: fc.array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom("name", "interval", "limit", "start_at"),
        fc.string({ maxLength: 8 }).map(encodeURIComponent),
        fc.constant("%00"),
      ),
      queryValue,
    ),
    { maxLength: 4 },
  ),
  sse: fc.boolean(),
  lastEventId: fc.option(
    fc.oneof(fc.constantFrom("0", "18446744073709551615", "-1", " 3 ", "x"), fc.string({ maxLength: 10 })),
    { nil: undefined },
  ),
});

export function queryPath(q: { pairs: Array<[string, string]> }): string {
  return `/stream?${q.pairs.map(([k, v]) => `${k}=${v}`).join("&")}`;
}
