import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { greetingText, MAX_COUNTER, planStream } from "../src/core/greeting.js";
import { durationFromMs } from "../src/shared/duration.js";

const params = { name: "Bob", limit: 0n, startAt: 0n };

function invalid(fn: () => unknown, message: RegExp) {
  assert.throws(fn, (e) => e instanceof ConnectError && e.code === Code.InvalidArgument && message.test(e.rawMessage));
}

describe("greetingText()", () => {
  it("should say exactly what the seed said", () => {
    assert.equal(greetingText("Bob", 3n), "Hello Bob, this is 3 time stream message.");
  });
});

describe("planStream()", () => {
  it("should greet Anonymous when the name is empty", () => {
    assert.equal(planStream({ ...params, name: "" }, 2000).name, "Anonymous");
  });
  it("should take the default interval when interval is unset, and zero when zero", () => {
    assert.equal(planStream(params, 1234).intervalMs, 1234);
    assert.equal(planStream({ ...params, interval: durationFromMs(0) }, 1234).intervalMs, 0);
    assert.equal(planStream({ ...params, interval: durationFromMs(1500) }, 1234).intervalMs, 1500);
  });
  it("should run from start_at to start_at + limit - 1", () => {
    const plan = planStream({ ...params, startAt: 10n, limit: 5n }, 0);
    assert.equal(plan.first, 10n);
    assert.equal(plan.last, 14n);
  });
  it("should run to the end of the counter's range when there is no limit", () => {
    assert.equal(planStream({ ...params, startAt: 5n }, 0).last, MAX_COUNTER);
  });
  it("should accept the very last counter, and refuse one past it", () => {
    assert.equal(planStream({ ...params, startAt: MAX_COUNTER, limit: 1n }, 0).last, MAX_COUNTER);
    invalid(() => planStream({ ...params, startAt: MAX_COUNTER, limit: 2n }, 0), /^start_at plus limit /);
  });
  it("should count characters, not UTF-16 units", () => {
    assert.equal(planStream({ ...params, name: "é".repeat(100) }, 0).name.length, 100);
    assert.doesNotThrow(() => planStream({ ...params, name: "🎉".repeat(100) }, 0));
    invalid(
      () => planStream({ ...params, name: "🎉".repeat(101) }, 0),
      /^name must be at most 100 characters \(got 101\)$/,
    );
  });
  it("should refuse control characters, line separators and DEL", () => {
    for (const bad of ["a\u0000", "a\nb", "a\rb", "a\u007f", "a\u0085", "a\u2028b", "\u001b[31mred"]) {
      invalid(() => planStream({ ...params, name: bad }, 0), /^name must not contain control characters$/);
    }
  });
  it("should refuse intervals below 0, above 1 h, and malformed ones", () => {
    invalid(() => planStream({ ...params, interval: durationFromMs(3_600_001) }, 0), /^interval must be between/);
    invalid(
      () => planStream({ ...params, interval: { $typeName: "google.protobuf.Duration", seconds: -1n, nanos: 0 } }, 0),
      /^interval must be between/,
    );
    invalid(
      () => planStream({ ...params, interval: { $typeName: "google.protobuf.Duration", seconds: 1n, nanos: -5 } }, 0),
      /^interval is not a valid duration$/,
    );
    assert.equal(planStream({ ...params, interval: durationFromMs(3_600_000) }, 0).intervalMs, 3_600_000);
  });
});
