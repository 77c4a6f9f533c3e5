import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Deferred, TurnBudget } from "../src/core/turn-budget.js";
import { assertTurns, turnProbe } from "./support/turns.js";

// The shared budget, as the streams use it: every stream asks before each
// message, and when refused defers itself to a later turn. Streams that never
// have to wait (fast readers) must still give the event loop back every
// slice, all of them together, and take turns fairly.

function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

/** A stream that sends `total` messages of 0.1 ms each, asking the budget first, as GreetingStream does. */
function busyStream(budget: TurnBudget, total: number, probe: { turns: number[] }): Promise<number> {
  return new Promise((resolve) => {
    let sent = 0;
    const task: Deferred = {
      deferredNext: undefined,
      resumeTurn: () => run(),
    };
    const run = () => {
      for (let burst = 0; sent < total; burst++) {
        if (!budget.allows() || (burst > 0 && budget.deferred > 0)) {
          budget.defer(task);
          return;
        }
        spin(0.1);
        sent++;
      }
      resolve(probe.turns.length);
    };
    // All arrive together: in line, for the next turn.
    budget.defer(task);
  });
}

describe("TurnBudget", () => {
  it("should let the first stream of a turn go on", () => {
    assert.equal(new TurnBudget(10).allows(), true);
  });

  it("should hold 100 busy streams together to about one slice per turn, and share it fairly", async () => {
    const budget = new TurnBudget(10);
    const probe = turnProbe();
    // Each stream sends 40 messages and stops: bounded, and without the budget
    // all 4,000 would go in one turn of the event loop.
    const finishedAt = await Promise.all(Array.from({ length: 100 }, () => busyStream(budget, 40, probe)));
    probe.stop();
    assertTurns(probe.turns);
    // Taking turns, they all finish within a few turns of each other.
    const spread = Math.max(...finishedAt) - Math.min(...finishedAt);
    assert.ok(spread <= 3, `streams finished from turn ${Math.min(...finishedAt)} to ${Math.max(...finishedAt)}`);
    assert.equal(budget.deferred, 0);
  });
  it("should run a task deferred again while it waits once, in its first place, and keep the line whole", async () => {
    const budget = new TurnBudget(10);
    const ran: string[] = [];
    const task = (name: string): Deferred => ({ deferredNext: undefined, resumeTurn: () => ran.push(name) });
    const [a, b, c] = [task("a"), task("b"), task("c")];
    budget.defer(a);
    budget.defer(b);
    budget.defer(c);
    // b again, in the same line and in the other one: a stream that is
    // deferred and then cancelled past the slice asks for both.
    budget.defer(b);
    budget.deferChange(b);
    budget.defer(a);
    assert.equal(budget.deferred, 3);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(ran, ["a", "b", "c"]);
    assert.equal(budget.deferred, 0);
    // Out of the line, it can wait again.
    budget.defer(b);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(ran, ["a", "b", "c", "b"]);
  });
  it("should start new streams beside a pass that takes every slice, by time and not one a turn", {
    timeout: 10_000,
  }, async () => {
    // An overloaded server: the pacer's pass is one task that spends the
    // whole slice and goes on in the next turn. 200 streams arriving beside
    // it, 0.1 ms each, take 20 ms: a few turns at half a slice each. One a
    // turn, they took 200 turns (10,000 streams on the connect road: 4,000
    // never started in two minutes).
    const budget = new TurnBudget(10);
    const probe = turnProbe();
    let passes = 0;
    let passing = true;
    const pass: Deferred = {
      deferredNext: undefined,
      resumeTurn: () => {
        passes++;
        while (budget.allows()) spin(0.1);
        if (passing) budget.defer(pass);
      },
    };
    budget.defer(pass);
    const started: number[] = [];
    await new Promise<void>((resolve) => {
      for (let i = 0; i < 200; i++) {
        budget.deferChange({
          deferredNext: undefined,
          resumeTurn: () => {
            spin(0.1);
            started.push(probe.turns.length);
            if (started.length === 200) resolve();
          },
        });
      }
    });
    passing = false;
    probe.stop();
    assert.ok((started.at(-1) as number) <= 10, `the last of 200 new streams started in turn ${started.at(-1)}`);
    assert.ok(passes >= 3, `the pass ran in ${passes} turns meanwhile`);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.equal(budget.deferred, 0);
  });
});
