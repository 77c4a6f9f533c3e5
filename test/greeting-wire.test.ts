import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import { StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { greetingMessage } from "../src/entries/connect/stream-generator.js";
import { GreetingWire } from "../src/entries/kit/greeting-wire.js";
import { EnvelopeSplitter } from "../src/entries/lean-rpc/envelope-splitter.js";
import { envelope } from "./support/wire.js";

// The hand encoders of the lean roads, held to protobuf-es: every name a
// stream may have (up to 100 code points, any of them four UTF-8 bytes, JSON's
// own escapes), every size of counter up to 2^64 - 1, and times with and
// without a fraction of a second.

const names = ["Anonymous", "Bob", "Zoë 🐙", "x".repeat(100), '"quoted" \\ back', "tab\tnew", "🐙".repeat(100), "<>&'"];
const counters = [0n, 1n, 127n, 128n, 16_383n, 16_384n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];
const times = [0, 999, 1000, 1_764_000_000_000, 1_764_000_000_001, 1_764_000_000_010, 1_764_000_000_999];

describe("GreetingWire", () => {
  it("should write exactly what toBinary writes, in an envelope", () => {
    for (const name of names) {
      const wire = new GreetingWire(name);
      for (const counter of counters) {
        for (const millis of times) {
          const want = envelope(toBinary(StreamResponseSchema, greetingMessage(name, counter, millis)));
          assert.deepEqual(wire.envelope(counter, millis), want, `${JSON.stringify(name)} ${counter} ${millis}`);
        }
      }
    }
  });

  it("should write exactly what toJsonString writes", () => {
    for (const name of names) {
      const wire = new GreetingWire(name);
      for (const counter of counters) {
        for (const millis of times) {
          const want = toJsonString(StreamResponseSchema, greetingMessage(name, counter, millis));
          assert.equal(wire.json(counter, millis), want);
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
