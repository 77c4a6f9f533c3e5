import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Pacer, type Waiter } from "../src/core/pacer.js";
import { type Deferred, TurnBudget } from "../src/core/turn-budget.js";

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

  it("should wake 100,000 waiters that came out of due order in due order, to the millisecond", async () => {
    // A fleet that opens at once: streams start late, out of the order in
    // which they are due. Seeded, so that a failure replays.
    const pacer = new Pacer(new TurnBudget());
    let seed = 20261204;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const start = performance.now() + 50;
    const woke: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      const due = start + random() * 200;
      pacer.wakeAt(
        waiter(() => woke.push(due)),
        2000,
        due,
      );
    }
    assert.equal(pacer.timers, 1);
    await wokenAll(pacer, 10_000);
    assert.equal(woke.length, 100_000);
    for (let i = 1; i < woke.length; i++) {
      assert.ok(
        Math.ceil(woke[i] as number) >= Math.ceil(woke[i - 1] as number),
        `woken out of due order at ${i}: ${woke[i - 1]} then ${woke[i]}`,
      );
    }
    assert.equal(pacer.timers, 0);
  });
  it("should run a pass cut short by the budget once, while the streams it woke wait again at a short interval", async () => {
    // Streams woken in a pass wait again, and re-arm the timer; at 1 ms the
    // timer is due before the budget gives the cut pass its turn. Run twice,
    // the pass deferred itself twice into the budget's line, which ended the
    // process on the line's next shift.
    const budget = new TurnBudget(1);
    const pacer = new Pacer(budget);
    const spin = () => {
      const until = performance.now() + 0.02;
      while (performance.now() < until) {}
    };
    // A fast reader beside them keeps the budget's line long, as streams do.
    let fastLeft = 3_000;
    let fastDone = () => {};
    const fastFinished = new Promise<void>((r) => {
      fastDone = r;
    });
    const fast: Deferred = {
      deferredNext: undefined,
      resumeTurn: () => {
        spin();
        if (--fastLeft > 0) budget.defer(fast);
        else fastDone();
      },
    };
    budget.defer(fast);
    let woken = 0;
    const rounds = new Map<Waiter, number>();
    for (let i = 0; i < 2_000; i++) {
      const w: Waiter = waiter(() => {
        woken++;
        spin();
        const left = (rounds.get(w) ?? 0) - 1;
        rounds.set(w, left);
        if (left > 0) pacer.wakeAt(w, 1, performance.now() + 1);
      });
      rounds.set(w, 5);
      pacer.wakeAt(w, 1, performance.now());
    }
    await wokenAll(pacer, 20_000);
    await fastFinished;
    assert.equal(woken, 10_000, "every wait woken once, none lost, none twice");
    assert.equal(budget.deferred, 0);
    assert.equal(pacer.timers, 0);
  });
});
