import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { durationFromMs } from "../src/shared/duration.js";
import { clientCases, streamClient } from "./support/clients.js";
import { startServer, type TestServer } from "./support/server.js";

describe("Stream on every protocol and HTTP version", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  for (const c of clientCases) {
    describe(c.name, () => {
      it("should send `limit` greetings counting from start_at, then end OK", async () => {
        const client = streamClient(c, srv.url);
        const got = [];
        for await (const m of client.stream({ name: "Bob", limit: 3n, startAt: 7n, interval: durationFromMs(0) })) {
          got.push(m);
        }
        assert.deepEqual(
          got.map((m) => [m.counter, m.message]),
          [
            [7n, "Hello Bob, this is 7 time stream message."],
            [8n, "Hello Bob, this is 8 time stream message."],
            [9n, "Hello Bob, this is 9 time stream message."],
          ],
        );
        for (const m of got) {
          const ms = Number(m.timestamp?.seconds) * 1000 + (m.timestamp?.nanos ?? 0) / 1e6;
          assert.ok(Math.abs(Date.now() - ms) < 60_000, "timestamp is now");
        }
      });

      it("should greet Anonymous when the name is empty", async () => {
        const client = streamClient(c, srv.url);
        for await (const m of client.stream({ limit: 1n })) {
          assert.equal(m.message, "Hello Anonymous, this is 0 time stream message.");
        }
      });

      it("should log the start and the end of the stream with protocol and HTTP version", async () => {
        const client = streamClient(c, srv.url);
        for await (const _ of client.stream({ name: c.name, limit: 2n, interval: durationFromMs(0) })) {
        }
        const started = srv.logs.find((l) => l.msg === "stream started" && l.name === c.name);
        const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === c.name);
        assert.ok(started && ended);
        assert.equal(started.protocol, c.protocol);
        assert.equal(started.http, c.httpVersion === "2" ? "2.0" : "1.1");
        assert.match(String(started.peer), /^127\.0\.0\.1:\d+$/);
        assert.equal(ended.id, started.id);
        assert.equal(ended.reason, "limit");
        assert.equal(ended.sent, 2);
      });
    });
  }
});
