import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TurnBudget } from "../src/core/turn-budget.js";
import { assertTurns, turnProbe } from "./support/turns.js";

// The shared budget, as the streams use it: every stream asks before each
// message, and has at least one await per message (a road pulls each message
// with `await messages.next()`). Streams that never have to wait (fast
// readers) must still give the event loop back every slice, all of them
// together, and take turns fairly. Every "message" here costs 0.1 ms of CPU.

function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

describe("TurnBudget", () => {
  it("should let the first stream of a turn go on without waiting", () => {
    const budget = new TurnBudget(10);
    assert.equal(budget.take(), undefined);
  });

  it("should hold 100 busy streams together to about one slice per turn, and share it fairly", async () => {
    const budget = new TurnBudget(10);
    const probe = turnProbe();
    // Each stream sends 40 messages and stops: bounded, and without the budget
    // all 4,000 would go in one turn of the event loop.
    const finishedAt = await Promise.all(
      Array.from({ length: 100 }, async () => {
        for (let sent = 0; sent < 40; sent++) {
          const turn = budget.take();
          if (turn !== undefined) await turn;
          spin(0.1);
          // The road's pull of the next message.
          await null;
        }
        return probe.turns.length;
      }),
    );
    probe.stop();
    assertTurns(probe.turns);
    // Taking turns, they all finish within a few turns of each other.
    const spread = Math.max(...finishedAt) - Math.min(...finishedAt);
    assert.ok(spread <= 3, `streams finished from turn ${Math.min(...finishedAt)} to ${Math.max(...finishedAt)}`);
  });
});
