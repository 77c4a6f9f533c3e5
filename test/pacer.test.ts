import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Pacer, type Waiter } from "../src/core/pacer.js";
import { TurnBudget } from "../src/core/turn-budget.js";

// The waits between messages: one timer per interval, a pass that wakes all
// that are due by a plain call, in due order.

function waiter(onWake: () => void): Waiter {
  return { wake: onWake, due: 0, prevWaiter: undefined, nextWaiter: undefined, queue: undefined };
}

function wokenAll(pacer: Pacer, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pacer.pending === 0) return resolve();
      if (performance.now() > deadline) return reject(new Error(`${pacer.pending} waits left`));
      setTimeout(check, 5);
    };
    check();
  });
}

describe("Pacer", () => {
  it("should wake waiters in due order, sharing one timer per interval", async () => {
    const pacer = new Pacer(new TurnBudget());
    const woke: string[] = [];
    const now = performance.now();
    pacer.wakeAt(
      waiter(() => woke.push("a")),
      30,
      now + 30,
    );
    pacer.wakeAt(
      waiter(() => woke.push("b")),
      30,
      now + 10,
    );
    pacer.wakeAt(
      waiter(() => woke.push("c")),
      30,
      now + 20,
    );
    pacer.wakeAt(
      waiter(() => woke.push("d")),
      50,
      now + 5,
    );
    assert.equal(pacer.pending, 4);
    assert.equal(pacer.timers, 2);
    await wokenAll(pacer, 2000);
    assert.deepEqual(woke, ["d", "b", "c", "a"]);
    assert.equal(pacer.timers, 0);
  });

  it("should not wake a waiter before its due time", async () => {
    const pacer = new Pacer(new TurnBudget());
    const due = performance.now() + 40;
    let wokeAt = 0;
    pacer.wakeAt(
      waiter(() => {
        wokeAt = performance.now();
      }),
      40,
      due,
    );
    await wokenAll(pacer, 2000);
    assert.ok(wokeAt >= due - 1, "woke no more than the slack early");
  });

  it("should forget a cancelled wait and disarm its timer, leaving the others", async () => {
    const pacer = new Pacer(new TurnBudget());
    const woke: string[] = [];
    const gone = waiter(() => woke.push("gone"));
    pacer.wakeAt(gone, 20, performance.now() + 10);
    pacer.wakeAt(
      waiter(() => woke.push("stays")),
      20,
      performance.now() + 20,
    );
    pacer.cancel(gone);
    assert.equal(pacer.pending, 1);
    await wokenAll(pacer, 2000);
    assert.deepEqual(woke, ["stays"]);
    const alone = waiter(() => woke.push("never"));
    pacer.wakeAt(alone, 60_000, performance.now() + 60_000);
    assert.equal(pacer.timers, 1);
    pacer.cancel(alone);
    assert.equal(pacer.timers, 0);
    pacer.cancel(alone);
    assert.equal(pacer.pending, 0);
  });

  it("should wake 20,000 due waiters over several turns within the budget, none early, none lost", async () => {
    const budget = new TurnBudget(10);
    const pacer = new Pacer(budget);
    let woken = 0;
    const spin = () => {
      const until = performance.now() + 0.01;
      while (performance.now() < until) {}
    };
    const due = performance.now() + 20;
    for (let i = 0; i < 20_000; i++) {
      pacer.wakeAt(
        waiter(() => {
          woken++;
          spin();
        }),
        100,
        due,
      );
    }
    let turns = 0;
    const probe = setInterval(() => turns++, 1);
    await wokenAll(pacer, 10_000);
    clearInterval(probe);
    assert.equal(woken, 20_000);
    // 200 ms of work at 10 ms a turn: the event loop turned in between.
    assert.ok(turns >= 5, `the event loop turned ${turns} times during the pass`);
  });
});
