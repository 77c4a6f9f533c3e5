import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "../src/shared/duration.js";
import { clientCases, streamClient } from "./support/clients.js";
import { eventually, settled, startServer, type TestServer } from "./support/server.js";

describe("a stream that ends early", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  function assertNothingLeft() {
    const { streams } = srv.server;
    assert.equal(streams.liveCount, 0, "live streams");
    assert.equal(streams.pacer.pending, 0, "pending waits");
    assert.equal(streams.pacer.timers, 0, "armed timers");
  }

  for (const c of clientCases) {
    describe(`over ${c.name}`, () => {
      it("should end at once when the client cancels during the wait, leaving no stream, wait or timer", async () => {
        const name = `cancel ${c.name}`;
        const abort = new AbortController();
        const stream = streamClient(c, srv.url).stream(
          { name, interval: durationFromMs(3_600_000) },
          { signal: abort.signal },
        );
        const it = stream[Symbol.asyncIterator]();
        const first = await it.next();
        assert.equal(first.value?.counter, 0n);
        assert.equal(srv.server.streams.liveCount, 1);
        assert.equal(srv.server.streams.pacer.pending, 1);
        const aborted = performance.now();
        abort.abort();
        await assert.rejects(it.next(), (e) => ConnectError.from(e).code === Code.Canceled);
        await eventually(() => srv.server.streams.liveCount === 0, 100, "the live count to return to 0");
        assert.ok(performance.now() - aborted < 100);
        assertNothingLeft();
        const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === name);
        assert.equal(ended?.reason, "cancelled");
        assert.equal(ended?.sent, 1);
      });

      it("should end with DEADLINE_EXCEEDED when the deadline passes", async () => {
        const name = `deadline ${c.name}`;
        const started = performance.now();
        const got: bigint[] = [];
        await assert.rejects(
          async () => {
            for await (const m of streamClient(c, srv.url).stream(
              { name, interval: durationFromMs(100) },
              { timeoutMs: 350 },
            )) {
              got.push(m.counter);
            }
          },
          (e) => ConnectError.from(e).code === Code.DeadlineExceeded,
        );
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 300 && elapsed < 2000, `ended after ${elapsed} ms`);
        assert.ok(got.length >= 3, `received ${got.length} messages before the deadline`);
        await eventually(() => srv.server.streams.liveCount === 0, 500, "the live count to return to 0");
        assertNothingLeft();
        await eventually(
          () => srv.logs.some((l) => l.msg === "stream ended" && l.name === name),
          500,
          "the end of the stream to be logged",
        );
        const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === name);
        assert.equal(ended?.reason, "deadline");
      });
    });
  }

  for (const c of clientCases) {
    it(`should not buffer for a client that stops reading, and free its stream when it goes (${c.name})`, async () => {
      const abort = new AbortController();
      const before = srv.server.streams.messagesSent;
      const stream = streamClient(c, srv.url).stream(
        { name: "slow reader", interval: durationFromMs(0) },
        { signal: abort.signal },
      );
      const it = stream[Symbol.asyncIterator]();
      await it.next();
      // Stop reading while the server floods: flow control must pause the generator, not buffer.
      const sent = await settled(() => srv.server.streams.messagesSent, 300, 30_000, "the generator to pause");
      // About 900 over HTTP/2 (its windows), some 30,000-50,000 over HTTP/1.1 (the kernel's socket buffers).
      const stalled = sent - before;
      assert.ok(stalled < 200_000, `stopped after ${stalled} messages, bounded by the flow-control windows`);
      assert.equal(srv.server.streams.liveCount, 1, "the paused stream is still open");
      abort.abort();
      await eventually(() => srv.server.streams.liveCount === 0, 100, "the live count to return to 0");
      assertNothingLeft();
    });
  }
});
