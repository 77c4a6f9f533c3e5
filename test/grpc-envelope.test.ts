import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { EnvelopeSplitter, encodeResponse, envelope } from "../src/entries/lean-grpc/grpc-envelope.js";

describe("encodeResponse()", () => {
  const names = ["", "Bob", "Zoë 🐙", "x".repeat(100), "\ud800 lone surrogate", "🐙".repeat(100)];
  const counters = [0n, 1n, 127n, 128n, 16_383n, 16_384n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];
  const stamps = [
    undefined,
    { seconds: 0n, nanos: 0 },
    { seconds: 1_764_000_000n, nanos: 999_000_000 },
    { seconds: -5n, nanos: 7 },
  ];

  it("should write exactly what toBinary writes, in an envelope", () => {
    for (const message of names) {
      for (const counter of counters) {
        for (const ts of stamps) {
          const msg = create(StreamResponseSchema, {
            message,
            counter,
            ...(ts ? { timestamp: { $typeName: "google.protobuf.Timestamp", ...ts } } : {}),
          });
          const want = envelope(toBinary(StreamResponseSchema, msg));
          assert.deepEqual(encodeResponse(msg), want, `${JSON.stringify(message)} ${counter} ${ts?.seconds}`);
        }
      }
    }
  });
});

describe("EnvelopeSplitter", () => {
  const a = envelope(Buffer.from("hello"));
  const b = envelope(Buffer.alloc(0));

  it("should split envelopes across any chunk boundaries", () => {
    const all = Buffer.concat([a, b, a]);
    for (let cut = 0; cut <= all.length; cut++) {
      const s = new EnvelopeSplitter(4096);
      const got = [...s.push(all.subarray(0, cut)), ...s.push(all.subarray(cut))];
      assert.deepEqual(
        got.map((e) => Buffer.from(e.data).toString()),
        ["hello", "", "hello"],
      );
      s.end();
    }
  });

  it("should fail an oversize length prefix before its payload arrives", () => {
    const s = new EnvelopeSplitter(4);
    assert.throws(() => s.push(a.subarray(0, 5)), /message size 5 is larger than configured readMaxBytes 4/);
  });

  it("should fail a body that ends inside a header or a payload", () => {
    for (const part of [a.subarray(0, 3), a.subarray(0, 7)]) {
      const s = new EnvelopeSplitter(4096);
      s.push(part);
      assert.throws(() => s.end(), /incomplete envelope/);
    }
  });
});
