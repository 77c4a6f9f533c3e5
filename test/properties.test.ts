import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { resumeRequest } from "../packages/client/src/resume-stream.js";
import { ANONYMOUS, MAX_COUNTER, MAX_INTERVAL_MS, MAX_NAME_LENGTH, planStream } from "../src/core/greeting.js";
import { parseQuery } from "../src/entries/http-stream/query.js";

// Properties of request validation and of the resume arithmetic, over the
// whole range of their inputs: names of every kind, durations of every
// shape, and counters up to 2^64-1 where start_at + limit overflows. Pure
// functions, so thousands of cases take a moment. Seed fixed as in
// test/fuzz.test.ts (FUZZ_SEED, FUZZ_PATH replay a failure).

const params: fc.Parameters<unknown> = {
  seed: Number(process.env.FUZZ_SEED ?? 20_251_201),
  numRuns: Number(process.env.FUZZ_RUNS ?? 300),
  ...(process.env.FUZZ_PATH !== undefined ? { path: process.env.FUZZ_PATH } : {}),
};

/** Runs `property` within the bounds; `examples` run first, every time: the edges a random draw may miss. */
const check = <Ts>(property: fc.IProperty<Ts>, examples: Ts[] = []) =>
  fc.assert(property, { ...params, examples } as fc.Parameters<Ts>);

/** A counter anywhere in uint64, with the edges (0, 1, 2^63, 2^64-2, 2^64-1) drawn often. */
const counter = fc.oneof(
  fc.bigInt({ min: 0n, max: MAX_COUNTER }),
  fc.constantFrom(0n, 1n, 2n ** 63n, MAX_COUNTER - 1n, MAX_COUNTER),
  fc.bigInt({ min: MAX_COUNTER - 1000n, max: MAX_COUNTER }),
  fc.bigInt({ min: 0n, max: 1000n }),
);

/** planStream's verdict: the plan, or the rejection, which must be INVALID_ARGUMENT. */
function plan(params: Parameters<typeof planStream>[0]) {
  try {
    return planStream(params, 2000);
  } catch (e) {
    assert.ok(e instanceof ConnectError, `planStream threw ${String(e)}`);
    assert.equal(e.code, Code.InvalidArgument);
    return e;
  }
}

const codePoints = (s: string) => [...s].length;
const unsafe = /[\p{Cc}\u2028\u2029]/u;

describe("request validation (planStream)", () => {
  it("should take any name of at most 100 characters without control characters as it is, and reject any other with INVALID_ARGUMENT", () => {
    const name = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 120 }),
      fc.string({ unit: "binary", maxLength: 110 }),
      fc.string({ unit: "grapheme-ascii", minLength: 95, maxLength: 105 }),
      fc.constantFrom("", "\n", "Bob\u2028", "\u0085", "\u007f", "😀".repeat(100), "😀".repeat(101)),
    );
    check(
      fc.property(name, (n) => {
        const result = plan({ name: n, limit: 1n, startAt: 0n });
        const acceptable = codePoints(n) <= MAX_NAME_LENGTH && !unsafe.test(n);
        if (result instanceof ConnectError) {
          assert.ok(!acceptable, `rejected ${JSON.stringify(n)}: ${result.rawMessage}`);
          assert.match(result.rawMessage, /^name /);
        } else {
          assert.ok(acceptable, `accepted ${JSON.stringify(n)}`);
          assert.equal(result.name, n === "" ? ANONYMOUS : n);
        }
      }),
    );
  });

  it("should take an interval from 0s to 1h as its milliseconds, and reject any other duration with INVALID_ARGUMENT", () => {
    const duration = fc.record({
      seconds: fc.oneof(
        fc.bigInt({ min: -10n, max: 4000n }),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.constant(3600n),
      ),
      nanos: fc.oneof(fc.integer({ min: -1_500_000_000, max: 1_500_000_000 }), fc.constantFrom(0, 999_999_999, -1)),
    });
    check(
      fc.property(duration, ({ seconds, nanos }) => {
        const result = plan({
          name: "",
          interval: { $typeName: "google.protobuf.Duration", seconds, nanos },
          limit: 1n,
          startAt: 0n,
        });
        const valid = nanos > -1e9 && nanos < 1e9 && !(seconds > 0n && nanos < 0) && !(seconds < 0n && nanos > 0);
        const totalNanos = seconds * 1_000_000_000n + BigInt(nanos);
        const inRange = totalNanos >= 0n && totalNanos <= BigInt(MAX_INTERVAL_MS) * 1_000_000n;
        if (result instanceof ConnectError) {
          assert.ok(!(valid && inRange), `rejected ${seconds}s ${nanos}ns: ${result.rawMessage}`);
          assert.match(result.rawMessage, /^interval /);
        } else {
          assert.ok(valid && inRange, `accepted ${seconds}s ${nanos}ns`);
          assert.equal(result.intervalMs, Number(seconds) * 1000 + nanos / 1e6);
        }
      }),
    );
  });

  it("should plan exactly `limit` messages from start_at, all within 0 to 2^64-1, or reject the overflow with INVALID_ARGUMENT", () => {
    check(
      fc.property(counter, counter, (startAt, limit) => {
        const result = plan({ name: "", limit, startAt });
        if (limit === 0n) {
          assert.ok(!(result instanceof ConnectError));
          assert.deepEqual([result.first, result.last], [startAt, MAX_COUNTER]);
          return;
        }
        if (startAt + limit - 1n > MAX_COUNTER) {
          assert.ok(result instanceof ConnectError, `accepted start_at ${startAt} + limit ${limit}`);
          assert.match(result.rawMessage, /^start_at plus limit /);
          return;
        }
        assert.ok(!(result instanceof ConnectError), `rejected start_at ${startAt} + limit ${limit}`);
        assert.equal(result.first, startAt);
        assert.equal(result.last - result.first + 1n, limit);
      }),
    );
  });
});

describe("resume arithmetic", () => {
  /** A stream's start and limit (0: none), and where it broke: after `received` messages, the last being `last`. */
  const broken = fc
    .tuple(counter, counter)
    .filter(([startAt, limit]) => limit === 0n || startAt + limit - 1n <= MAX_COUNTER)
    .chain(([startAt, limit]) => {
      // Messages that can still follow: up to the limit, or up to the last counter.
      const room = limit === 0n ? MAX_COUNTER - startAt + 1n : limit;
      return fc.record({
        startAt: fc.constant(startAt),
        limit: fc.constant(limit),
        received: fc.oneof(fc.bigInt({ min: 0n, max: room - 1n }), fc.constantFrom(0n, room - 1n)),
      });
    });

  it("should resume the client (resumeRequest) right after the last message, with the same last counter: no gap, no duplicate", () => {
    check(
      fc.property(broken, ({ startAt, limit, received }) => {
        const original = plan({ name: "", limit, startAt });
        assert.ok(!(original instanceof ConnectError));
        const last = received === 0n ? undefined : startAt + received - 1n;
        const next = resumeRequest(startAt, limit, received, last);
        assert.equal(next.startAt, startAt + received);
        const resumed = plan({ name: "", limit: next.limit, startAt: next.startAt });
        assert.ok(!(resumed instanceof ConnectError), `the resumed request was rejected: ${String(resumed)}`);
        assert.equal(resumed.first, startAt + received);
        assert.equal(resumed.last, original.last);
      }),
    );
  });

  it("should resume an EventSource (Last-Event-ID on GET /stream) right after the last message, or answer that it is complete", () => {
    check(
      fc.property(counter, counter, counter, (startAt, limit, lastId) => {
        fc.pre(limit === 0n || startAt + limit - 1n <= MAX_COUNTER);
        const url = `/stream?start_at=${startAt}&limit=${limit}`;
        let resumed: ReturnType<typeof parseQuery>;
        try {
          resumed = parseQuery(url, String(lastId));
        } catch (e) {
          assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, String(e));
          // Only an id from before the stream's start is refused.
          assert.ok(lastId + 1n < startAt, `refused Last-Event-ID ${lastId} for ${url}: ${e.rawMessage}`);
          return;
        }
        assert.ok(lastId + 1n >= startAt);
        const original = plan({ name: "", limit, startAt });
        assert.ok(!(original instanceof ConnectError));
        if (resumed === undefined) {
          assert.ok(
            lastId >= original.last,
            `answered complete at ${lastId}, before the last counter ${original.last}`,
          );
          return;
        }
        assert.ok(lastId < original.last, `resumed after ${lastId}, past the last counter ${original.last}`);
        const next = plan(resumed);
        assert.ok(!(next instanceof ConnectError), `the resumed request was rejected: ${String(next)}`);
        assert.equal(next.first, lastId + 1n);
        assert.equal(next.last, original.last);
      }),
      [
        // The last counter of an unlimited stream: nothing is left to send.
        [0n, 0n, MAX_COUNTER],
        [MAX_COUNTER - 1n, 2n, MAX_COUNTER],
        [5n, 3n, 7n],
        [5n, 0n, 4n],
      ],
    );
  });

  it("should read start_at, limit and Last-Event-ID as uint64, and reject anything else naming the parameter", () => {
    const raw = fc.oneof(
      counter.map(String),
      fc.bigInt({ min: MAX_COUNTER + 1n, max: 2n ** 80n }).map(String),
      fc.constantFrom("-1", "+1", "1e3", "0x10", " 1", "1 ", "", "01", "00000000000000000000001", "１"),
      fc.string({ maxLength: 25 }),
    );
    check(
      fc.property(fc.constantFrom("start_at", "limit", "Last-Event-ID"), raw, (name, value) => {
        const url = name === "Last-Event-ID" ? "/stream" : `/stream?${name}=${encodeURIComponent(value)}`;
        const asUint64 = /^\d{1,20}$/.test(name === "Last-Event-ID" ? value.trim() : value)
          ? BigInt(name === "Last-Event-ID" ? value.trim() : value)
          : undefined;
        const valid = asUint64 !== undefined && asUint64 <= MAX_COUNTER;
        // An empty Last-Event-ID is no Last-Event-ID (EventSource sends none before its first id).
        const absent = name === "Last-Event-ID" && value.trim() === "";
        try {
          parseQuery(url, name === "Last-Event-ID" ? value : undefined);
          assert.ok(valid || absent, `accepted ${name}=${JSON.stringify(value)}`);
        } catch (e) {
          assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, String(e));
          assert.ok(!valid, `rejected ${name}=${JSON.stringify(value)}: ${e.rawMessage}`);
          assert.ok(e.rawMessage.startsWith(`${name} `), e.rawMessage);
        }
      }),
    );
  });
});
