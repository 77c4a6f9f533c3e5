import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamParams } from "../src/core/greeting.js";
import { type CallInfo, GreetingStreams, type StreamEnd, type StreamObserver } from "../src/core/stream-service.js";
import { openStream } from "../src/entries/connect/stream-generator.js";
import { durationFromMs } from "../src/shared/duration.js";
import { assertTurns, turnProbe } from "./support/turns.js";

// The one stream implementation on its own, without a socket: what every road
// relies on it for. The roads are tested over real sockets elsewhere.

interface Seen {
  rejected: Array<{ name: string; code: Code }>;
  opened: string[];
  ended: Array<{ name: string } & StreamEnd>;
}

function observed(): { observer: StreamObserver; seen: Seen } {
  const seen: Seen = { rejected: [], opened: [], ended: [] };
  return {
    seen,
    observer: {
      rejected: (_c, asked, error) => seen.rejected.push({ name: asked.name ?? "", code: error.code }),
      opened: (_c, name) => seen.opened.push(name),
      ended: (_c, name, end) => seen.ended.push({ name, ...end }),
    },
  };
}

let ids = 0;
function call(deadlineAt?: number): CallInfo {
  return {
    peer: "test",
    client: "test",
    connection: {},
    protocol: "test",
    httpVersion: "2.0",
    requestId: `r${ids++}`,
    deadlineAt,
  };
}

/** connect-node's generator over the core, as its road calls it. */
function open(streams: GreetingStreams, p: StreamParams, c: CallInfo, signal: AbortSignal) {
  return openStream(streams, p, c, signal, () => false);
}

function params(init: Partial<StreamParams> = {}): StreamParams {
  return { name: "Ada", limit: 0n, startAt: 0n, interval: durationFromMs(0), ...init };
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected a failure");
}

describe("GreetingStreams", () => {
  describe("the live registry", () => {
    it("should count a stream from its first message until it ends, however it ends", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const byLimit = open(streams, params({ limit: 2n }), call(), new AbortController().signal);
      const byReturn = open(streams, params(), call(), new AbortController().signal);
      const aborted = new AbortController();
      const byAbort = open(streams, params({ interval: durationFromMs(60_000) }), call(), aborted.signal);
      await Promise.all([byLimit.next(), byReturn.next(), byAbort.next()]);
      assert.equal(streams.liveCount, 3);
      await byLimit.next();
      assert.equal((await byLimit.next()).done, true);
      assert.equal(streams.liveCount, 2);
      await byReturn.return(undefined);
      assert.equal(streams.liveCount, 1);
      const waiting = byAbort.next();
      aborted.abort(new ConnectError("gone", Code.Canceled));
      await failure(waiting);
      assert.equal(streams.liveCount, 0);
      assert.equal(streams.pacer.pending, 0);
      assert.equal(streams.pacer.timers, 0);
      streams.flushObservers();
      assert.deepEqual(seen.opened, ["Ada", "Ada", "Ada"]);
      streams.flushObservers();
      assert.equal(seen.ended.length, 3);
    });

    it("should refuse a stream past maxStreams with RESOURCE_EXHAUSTED, and take one again once a slot frees", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ maxStreams: 1, observers: [observer] });
      const first = open(streams, params(), call(), new AbortController().signal);
      await first.next();
      const error = await failure(open(streams, params(), call(), new AbortController().signal).next());
      assert.equal(error.code, Code.ResourceExhausted);
      streams.flushObservers();
      assert.deepEqual(seen.rejected, [{ name: "Ada", code: Code.ResourceExhausted }]);
      await first.return(undefined);
      const again = open(streams, params({ limit: 1n }), call(), new AbortController().signal);
      assert.equal((await again.next()).value?.counter, 0n);
    });

    it("should refuse a bad request before it counts as open", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const error = await failure(
        open(streams, params({ name: "x".repeat(101) }), call(), new AbortController().signal).next(),
      );
      assert.equal(error.code, Code.InvalidArgument);
      assert.equal(streams.liveCount, 0);
      streams.flushObservers();
      assert.deepEqual(seen.opened, []);
      streams.flushObservers();
      assert.deepEqual(seen.ended, []);
      streams.flushObservers();
      assert.equal(seen.rejected.length, 1);
    });
  });

  describe("end reasons", () => {
    it("should end with limit after the last counter, having sent each message once", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const got: bigint[] = [];
      for await (const m of open(streams, params({ startAt: 5n, limit: 3n }), call(), new AbortController().signal)) {
        got.push(m.counter);
      }
      assert.deepEqual(got, [5n, 6n, 7n]);
      streams.flushObservers();
      assert.equal(seen.ended[0]?.reason, "limit");
      streams.flushObservers();
      assert.equal(seen.ended[0]?.sent, 3);
      assert.equal(streams.messagesSent, 3);
    });

    it("should end with cancelled when the client's signal aborts, with deadline when the deadline's does", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      for (const reason of [
        new ConnectError("client went away", Code.Canceled),
        new ConnectError("the operation timed out", Code.DeadlineExceeded),
      ]) {
        const abort = new AbortController();
        const it = open(streams, params({ interval: durationFromMs(60_000) }), call(), abort.signal);
        await it.next();
        const waiting = it.next();
        abort.abort(reason);
        assert.equal(await failure(waiting), reason);
      }
      streams.flushObservers();
      assert.deepEqual(
        seen.ended.map((e) => [e.reason, e.error?.code]),
        [
          ["cancelled", Code.Canceled],
          ["deadline", Code.DeadlineExceeded],
        ],
      );
    });

    it("should count a client that gives up at its own deadline as the deadline", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const abort = new AbortController();
      const it = open(
        streams,
        params({ interval: durationFromMs(60_000) }),
        call(performance.now() + 20),
        abort.signal,
      );
      await it.next();
      const waiting = it.next();
      await new Promise((resolve) => setTimeout(resolve, 30));
      abort.abort(new ConnectError("client reset", Code.Canceled));
      await failure(waiting);
      streams.flushObservers();
      assert.equal(seen.ended[0]?.reason, "deadline");
    });

    it("should end with error when the consumer throws into it", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const it = open(streams, params(), call(), new AbortController().signal);
      await it.next();
      await failure(it.throw(new Error("write failed")));
      streams.flushObservers();
      assert.equal(seen.ended[0]?.reason, "error");
      streams.flushObservers();
      assert.equal(seen.ended[0]?.error?.rawMessage, "write failed");
    });
  });

  describe("stopAll()", () => {
    it("should end every stream at once with UNAVAILABLE, even one that waits an hour, and refuse new ones", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const its = [0, 1, 2].map(() =>
        open(streams, params({ interval: durationFromMs(3_600_000) }), call(), new AbortController().signal),
      );
      await Promise.all(its.map((i) => i.next()));
      const waiting = its.map((i) => i.next());
      streams.stopAll();
      // Each waits an hour for its next message: ending at all means ending at once.
      const errors = await Promise.all(waiting.map(failure));
      assert.deepEqual(
        errors.map((e) => [e.code, e.rawMessage]),
        Array(3).fill([Code.Unavailable, "server is shutting down"]),
      );
      streams.flushObservers();
      assert.deepEqual(
        seen.ended.map((e) => e.reason),
        ["shutdown", "shutdown", "shutdown"],
      );
      const refused = await failure(open(streams, params(), call(), new AbortController().signal).next());
      assert.equal(refused.code, Code.Unavailable);
      assert.equal(streams.liveCount, 0);
    });
  });

  describe("an abort that lands while the stream sits at a yield", () => {
    it("should free the stream and report its end at once, and only once when the consumer returns later", async () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      const abort = new AbortController();
      const it = open(streams, params(), call(), abort.signal);
      await it.next();
      // Suspended at the yield: a consumer blocked on a full window may never pull again.
      abort.abort(new ConnectError("reset", Code.Canceled));
      assert.equal(streams.liveCount, 0);
      streams.flushObservers();
      assert.deepEqual(
        seen.ended.map((e) => e.reason),
        ["cancelled"],
      );
      await it.return(undefined);
      streams.flushObservers();
      assert.equal(seen.ended.length, 1);
    });
  });

  describe("pacing", () => {
    it("should keep to the schedule without drift: message k at first + k x interval", async () => {
      const streams = new GreetingStreams();
      const at: number[] = [];
      for await (const _ of open(
        streams,
        params({ limit: 6n, interval: durationFromMs(100) }),
        call(),
        new AbortController().signal,
      )) {
        at.push(performance.now());
        // 60 ms of work between messages must not add up: the next one is due
        // from the schedule (500 ms for five intervals), not from now (800 ms).
        const busy = performance.now() + 60;
        while (performance.now() < busy) {}
      }
      const total = (at[5] ?? 0) - (at[0] ?? 0);
      assert.ok(total >= 450 && total < 650, `5 intervals of 100 ms took ${total.toFixed(0)} ms`);
    });

    it("should not burst to catch up after the consumer stalled", async () => {
      const streams = new GreetingStreams();
      const it = open(streams, params({ interval: durationFromMs(40) }), call(), new AbortController().signal);
      await it.next();
      // The consumer stalls for five intervals, then pulls as fast as it can for 100 ms:
      // on schedule from now that is 3 messages; catching up would be 8.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const until = performance.now() + 100;
      let got = 0;
      while (performance.now() < until) {
        await it.next();
        got++;
      }
      await it.return(undefined);
      assert.ok(got >= 1 && got <= 4, `${got} messages in the 100 ms after the stall`);
    });
  });

  describe("fairness", () => {
    it("should give the event loop back while 50 consumers pull as fast as they can, and share it", async () => {
      const streams = new GreetingStreams();
      const probe = turnProbe();
      // 3,000 messages each, bounded: without the budget all 150,000 would go in one turn.
      const finishedAt = await Promise.all(
        Array.from({ length: 50 }, async () => {
          for await (const _ of open(streams, params({ limit: 3000n }), call(), new AbortController().signal)) {
          }
          return probe.turns.length;
        }),
      );
      probe.stop();
      assertTurns(probe.turns);
      const spread = Math.max(...finishedAt) - Math.min(...finishedAt);
      assert.ok(spread <= 3, `streams finished from turn ${Math.min(...finishedAt)} to ${Math.max(...finishedAt)}`);
      assert.equal(streams.liveCount, 0);
    });
  });

  describe("pace", () => {
    it("should count the interval from the first message as it leaves, when it waited its turn", async () => {
      const streams = new GreetingStreams();
      const sentAt: number[] = [];
      let ended = () => {};
      const done = new Promise<void>((r) => {
        ended = r;
      });
      // The turn's slice is spent (a thousand new streams went first): the
      // first message waits for the next turn, which comes 60 ms late.
      assert.equal(streams.budget.allows(), true);
      const spin = (ms: number) => {
        const until = performance.now() + ms;
        while (performance.now() < until) {}
      };
      spin(12);
      while (streams.budget.allows()) {}
      const admission = streams.admit(params({ limit: 2n, interval: durationFromMs(100) }), call());
      streams
        .start(admission, {
          write: () => sentAt.push(performance.now()) > 0,
          end: () => ended(),
        })
        .begin();
      assert.equal(sentAt.length, 0, "the first message waits for a later turn");
      spin(60);
      await done;
      const [first, second] = sentAt as [number, number];
      assert.ok(second - first >= 99, `the second message came ${second - first} ms after the first`);
    });
  });

  describe("refuse()", () => {
    it("should report a road's own refusal to the observers like admit()'s", () => {
      const { observer, seen } = observed();
      const streams = new GreetingStreams({ observers: [observer] });
      streams.refuse(call(), {}, new ConnectError("limit must be a whole number", Code.InvalidArgument));
      streams.flushObservers();
      assert.deepEqual(seen.rejected, [{ name: "", code: Code.InvalidArgument }]);
    });
  });
});
