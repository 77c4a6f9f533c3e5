import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { StreamRequestSchema } from "../gen/stream/v1/stream_pb.js";
import { readStreamRequest } from "../src/entries/kit/request-wire.js";
import { mutated } from "./support/fuzz-inputs.js";

// The lean road's hand reader of Stream's request, held to protobuf-es's
// fromBinary(): whatever it returns is exactly what fromBinary returns, it
// never accepts what fromBinary refuses, and it does read the plain form
// clients send (else it would only ever hand over to connect's parser).
// Seeded: FUZZ_SEED replays a failure.

const seed = Number(process.env.FUZZ_SEED ?? 20_261_203);

const uint64 = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 1n, max: 1000n }),
  fc.bigInt({ min: 0n, max: 2n ** 49n - 1n }),
  fc.bigInt({ min: 2n ** 49n, max: 2n ** 64n - 1n }),
);
const request = fc.record(
  {
    name: fc.oneof(fc.string({ maxLength: 120 }), fc.string({ unit: "grapheme", maxLength: 20 })),
    interval: fc.record({
      seconds: fc.oneof(fc.bigInt({ min: 0n, max: 100_000n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
      nanos: fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
    }),
    limit: uint64,
    startAt: uint64,
  },
  { requiredKeys: [] },
);
const encoded = request.map((r) => Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, r))));

/** fromBinary's answer: the message, or that it threw. */
function reference(bytes: Buffer): ReturnType<typeof fromBinary<typeof StreamRequestSchema>> | "throws" {
  try {
    return fromBinary(StreamRequestSchema, bytes);
  } catch {
    return "throws";
  }
}

function agrees(bytes: Buffer): boolean {
  const fast = readStreamRequest(bytes);
  if (fast === undefined) return true;
  const want = reference(bytes);
  assert.notEqual(want, "throws", `read what fromBinary refuses: ${bytes.toString("hex")}`);
  assert.deepStrictEqual(fast, want, bytes.toString("hex"));
  // The same shape as fromBinary's, key for key: V8 sees one kind of request object.
  assert.deepEqual(Object.keys(fast), Object.keys(want as object));
  return true;
}

const runs = { seed, numRuns: 3000 };

describe("readStreamRequest", () => {
  it("should read every request a client encodes exactly as fromBinary does", () => {
    fc.assert(fc.property(encoded, agrees), runs);
  });

  it("should hand over to connect's parser, never guess, on mutated and random bytes", () => {
    fc.assert(
      fc.property(mutated(encoded), (b) => agrees(Buffer.from(b))),
      runs,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => agrees(Buffer.from(b))),
      runs,
    );
  });

  it("should read the plain form itself: ASCII names, small numbers, each field once", () => {
    const plain = fc.record({
      name: fc.string({ unit: "binary-ascii", maxLength: 100 }),
      interval: fc.record({
        seconds: fc.bigInt({ min: 0n, max: 3600n }),
        nanos: fc.integer({ min: 0, max: 999_999_999 }),
      }),
      limit: fc.bigInt({ min: 0n, max: 2n ** 48n }),
      startAt: fc.bigInt({ min: 0n, max: 2n ** 48n }),
    });
    fc.assert(
      fc.property(plain, (r) => {
        const bytes = Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, r)));
        const fast = readStreamRequest(bytes);
        assert.notEqual(fast, undefined, `handed over a plain request: ${bytes.toString("hex")}`);
        return agrees(bytes);
      }),
      runs,
    );
  });

  it("should hand over what needs connect's rules: a field twice, an unknown field, UTF-8, a negative interval, int32 past its range", () => {
    const twice = Buffer.concat([
      Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, { name: "a" }))),
      Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, { name: "b" }))),
    ]);
    const cases: Record<string, Buffer> = {
      twice,
      unknown: Buffer.from([0x28, 0x01]),
      utf8: Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, { name: "Zoë" }))),
      negative: Buffer.from(
        toBinary(StreamRequestSchema, create(StreamRequestSchema, { interval: { seconds: -1n, nanos: 0 } })),
      ),
      huge: Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, { limit: 2n ** 64n - 1n }))),
      truncated: Buffer.from([0x0a, 0x05, 0x41]),
      // nanos of 2^31, which int32 wraps.
      nanosPastInt32: Buffer.from([0x12, 0x06, 0x10, 0x80, 0x80, 0x80, 0x80, 0x08]),
    };
    for (const [what, bytes] of Object.entries(cases)) assert.equal(readStreamRequest(bytes), undefined, what);
    assert.deepStrictEqual(readStreamRequest(Buffer.alloc(0)), fromBinary(StreamRequestSchema, new Uint8Array()));
  });
});
