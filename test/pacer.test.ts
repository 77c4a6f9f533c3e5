import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Pacer } from "../src/core/pacer.js";

describe("Pacer", () => {
  it("should wake waiters in due order, sharing one timer per interval", async () => {
    const pacer = new Pacer();
    const woke: string[] = [];
    const now = performance.now();
    const waits = [
      pacer
        .ticket()
        .sleepUntil(30, now + 30)
        .then(() => woke.push("a")),
      pacer
        .ticket()
        .sleepUntil(30, now + 10)
        .then(() => woke.push("b")),
      pacer
        .ticket()
        .sleepUntil(30, now + 20)
        .then(() => woke.push("c")),
      pacer
        .ticket()
        .sleepUntil(50, now + 5)
        .then(() => woke.push("d")),
    ];
    assert.equal(pacer.pending, 4);
    assert.equal(pacer.timers, 2);
    await Promise.all(waits);
    assert.deepEqual(woke, ["d", "b", "c", "a"]);
    assert.equal(pacer.pending, 0);
    assert.equal(pacer.timers, 0);
  });

  it("should not wake a waiter before its due time", async () => {
    const pacer = new Pacer();
    const due = performance.now() + 40;
    await pacer.ticket().sleepUntil(40, due);
    assert.ok(performance.now() >= due - 1, "woke no more than the slack early");
  });

  it("should reject a cancelled wait with the reason given and disarm its timer", async () => {
    const pacer = new Pacer();
    const ticket = pacer.ticket();
    const reason = new Error("client went away");
    const wait = ticket.sleepUntil(60_000, performance.now() + 60_000);
    assert.equal(pacer.timers, 1);
    ticket.cancel(reason);
    await assert.rejects(wait, (e) => e === reason);
    assert.equal(pacer.pending, 0);
    assert.equal(pacer.timers, 0);
  });

  it("should leave other waiters alone when one is cancelled", async () => {
    const pacer = new Pacer();
    const gone = pacer.ticket();
    const goneWait = gone.sleepUntil(20, performance.now() + 10);
    const stays = pacer.ticket().sleepUntil(20, performance.now() + 20);
    gone.cancel(new Error("x"));
    await assert.rejects(goneWait);
    await stays;
    assert.equal(pacer.pending, 0);
  });

  it("should ignore cancel() when nothing waits", () => {
    const pacer = new Pacer();
    pacer.ticket().cancel(new Error("nothing to cancel"));
    assert.equal(pacer.pending, 0);
  });
});
