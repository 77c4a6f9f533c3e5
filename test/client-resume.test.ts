import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { backoffDelay } from "../packages/client/src/backoff.js";
import {
  createStreamClient,
  type ResumeStatus,
  resumeStream,
  type StreamCaller,
  type StreamClient,
} from "../packages/client/src/index.js";
import { createNodeTransport, type NodeProtocol } from "../packages/client/src/node.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// The client package's resuming stream (packages/client/src/resume-stream.ts)
// against the real server in this process: through a restart on the same
// port, an abort, a break, a deadline over several attempts, an error no
// retry fixes, and a server that is gone for good.

const protocols: NodeProtocol[] = ["connect", "grpc", "grpcweb"];

function clientOf(srv: TestServer, protocol: NodeProtocol = "connect"): StreamClient {
  return createStreamClient(createNodeTransport({ baseUrl: srv.url, protocol }));
}

describe("resumeStream()", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  for (const protocol of protocols) {
    it(`should go on across a server restart on the same port with no gap and no duplicate (${protocol})`, async () => {
      const states: string[] = [];
      const counters: bigint[] = [];
      let beforeRestart = 0;
      const request = { name: `restart ${protocol}`, interval: durationFromMs(40), limit: 12n, startAt: 3n };
      const messages = resumeStream(clientOf(srv, protocol), request, {
        onStatus: (s) => {
          states.push(s.state);
          if (s.state === "reconnecting") beforeRestart = counters.length;
        },
        initialBackoffMs: 50,
      });
      for await (const m of messages) {
        counters.push(m.counter);
        assert.equal(m.message, `Hello restart ${protocol}, this is ${m.counter} time stream message.`);
        if (counters.length === 4) {
          const port = srv.port;
          await srv.close();
          srv = await startServer({ port });
        }
      }
      assert.deepEqual(
        counters,
        Array.from({ length: 12 }, (_, i) => BigInt(3 + i)),
      );
      assert.deepEqual(dedupe(states), ["connecting", "streaming", "reconnecting", "streaming", "done"]);
      // Asked for the next counter and the limit left, the restarted server sent only what was missing.
      assert.equal(srv.server.streams.messagesSent, 12 - beforeRestart);
    });
  }

  it("should drop a counter the server sends again, so the reader never sees a duplicate", async () => {
    const client = clientOf(srv);
    let attempt = 0;
    // A server that went back in time: the second attempt is sent two counters early.
    const rewinding: StreamCaller = {
      async *stream(request, options) {
        attempt++;
        const asked =
          attempt === 1 ? request : { ...request, startAt: request.startAt - 2n, limit: request.limit + 2n };
        let sent = 0;
        for await (const m of client.stream(asked, options)) {
          yield m;
          if (attempt === 1 && ++sent === 3) throw new ConnectError("cut by the test", Code.Unavailable);
        }
      },
    };
    const counters: bigint[] = [];
    const request = { name: "rewind", interval: durationFromMs(0), limit: 6n };
    for await (const m of resumeStream(rewinding, request, { initialBackoffMs: 1 })) counters.push(m.counter);
    assert.equal(attempt, 2);
    assert.deepEqual(counters, [0n, 1n, 2n, 3n, 4n, 5n]);
  });

  it("should end done, asking no more, when the connection breaks after the last message but before the end", async () => {
    const client = clientOf(srv);
    let attempts = 0;
    const cutAtTheEnd: StreamCaller = {
      async *stream(request, options) {
        attempts++;
        yield* client.stream(request, options);
        throw new ConnectError("cut after the last message", Code.Unavailable);
      },
    };
    const states: string[] = [];
    const counters: bigint[] = [];
    const request = { name: "cut at the end", interval: durationFromMs(0), limit: 3n };
    for await (const m of resumeStream(cutAtTheEnd, request, { onStatus: (s) => states.push(s.state) })) {
      counters.push(m.counter);
    }
    assert.deepEqual(counters, [0n, 1n, 2n]);
    assert.equal(attempts, 1, "a second attempt would ask for limit 0: no limit at all");
    assert.deepEqual(states, ["connecting", "streaming", "done"]);
  });

  it("should end quietly with status stopped when the signal aborts, and end the stream on the server", async () => {
    const stop = new AbortController();
    const states: string[] = [];
    let received = 0;
    const request = { name: "aborted", interval: durationFromMs(30) };
    for await (const _ of resumeStream(clientOf(srv), request, {
      signal: stop.signal,
      onStatus: (s) => states.push(s.state),
    })) {
      if (++received === 3) stop.abort();
    }
    assert.equal(received, 3);
    assert.deepEqual(states, ["connecting", "streaming", "stopped"]);
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "the aborted stream to end on the server");
  });

  it("should end the call on the server when the loop breaks", async () => {
    const states: string[] = [];
    for await (const m of resumeStream(
      clientOf(srv, "grpc"),
      { name: "broken off", interval: durationFromMs(30) },
      {
        onStatus: (s) => states.push(s.state),
      },
    )) {
      if (m.counter === 1n) break;
    }
    assert.deepEqual(states, ["connecting", "streaming", "stopped"]);
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end on the server");
    await eventually(
      () => srv.logs.some((l) => l.msg === "stream ended" && l.name === "broken off" && l.reason === "cancelled"),
      5000,
      "the server to log the cancel",
    );
  });

  it("should stop at once on an error that a retry cannot fix, with status error", async () => {
    const statuses: ResumeStatus[] = [];
    const error = await drain(
      resumeStream(clientOf(srv), { name: "x".repeat(101) }, { onStatus: (s) => statuses.push(s) }),
    );
    assert.equal(error?.code, Code.InvalidArgument);
    assert.match(error?.rawMessage ?? "", /name must be at most 100 characters/);
    assert.deepEqual(
      statuses.map((s) => s.state),
      ["connecting", "error"],
    );
    assert.equal(statuses[1]?.error, error);
  });

  it("should send the headers with every attempt", async () => {
    const seen: unknown[] = [];
    const client = clientOf(srv);
    const recording: StreamCaller = {
      async *stream(request, options) {
        seen.push(options.headers);
        yield* client.stream(request, options);
      },
    };
    const request = { name: "headers", interval: durationFromMs(0), limit: 2n };
    await drain(resumeStream(recording, request, { headers: { authorization: "Bearer t" } }));
    assert.deepEqual(seen, [{ authorization: "Bearer t" }]);
  });
});

describe("resumeStream() with a deadline", () => {
  let cutting: TestServer;
  before(async () => {
    // Every stream is cut after 200 ms, so a deadline of 700 ms spans several attempts.
    cutting = await startServer({ maxStreamDurationMs: 200 });
  });
  after(() => cutting.close());

  it("should count the deadline across reconnections and then throw DEADLINE_EXCEEDED", async () => {
    const states: string[] = [];
    let received = 0;
    const started = performance.now();
    const error = await drain(
      (async function* () {
        const request = { name: "deadline", interval: durationFromMs(50) };
        for await (const m of resumeStream(clientOf(cutting), request, {
          timeoutMs: 700,
          initialBackoffMs: 10,
          onStatus: (s) => states.push(s.state),
        })) {
          received++;
          yield m;
        }
      })(),
    );
    const took = performance.now() - started;
    assert.equal(error?.code, Code.DeadlineExceeded, String(error));
    assert.ok(took >= 690 && took < 3000, `ended after ${Math.round(took)} ms`);
    assert.ok(states.filter((s) => s === "reconnecting").length >= 2, `went on over cuts: ${states.join(", ")}`);
    assert.equal(states.at(-1), "error");
    assert.ok(received >= 8, `${received} messages within the deadline`);
  });
});

describe("resumeStream() with no server", () => {
  it("should back off with full jitter, doubling up to the cap, and give up after maxAttempts", async () => {
    const gone = await startServer();
    const client = clientOf(gone);
    await gone.close();
    const statuses: ResumeStatus[] = [];
    const error = await drain(
      resumeStream(
        client,
        { name: "nobody" },
        {
          onStatus: (s) => statuses.push(s),
          initialBackoffMs: 4,
          maxBackoffMs: 16,
          maxAttempts: 6,
          // The top of each range: the cap itself.
          random: () => 0.999_999,
        },
      ),
    );
    assert.equal(error?.code, Code.Unavailable);
    const waits = statuses.filter((s) => s.state === "reconnecting");
    assert.deepEqual(
      waits.map((s) => [s.attempt, s.delayMs]),
      [
        [1, 4],
        [2, 8],
        [3, 16],
        [4, 16],
        [5, 16],
      ],
    );
    assert.equal(statuses.at(-1)?.state, "error");
  });
});

describe("backoffDelay()", () => {
  it("should draw each wait uniformly below the cap, from 0", () => {
    const options = { initialMs: 250, maxMs: 10_000 };
    assert.equal(backoffDelay(1, { ...options, random: () => 0 }), 0);
    assert.equal(backoffDelay(1, { ...options, random: () => 0.5 }), 125);
    assert.equal(backoffDelay(3, { ...options, random: () => 0.5 }), 500);
    assert.equal(backoffDelay(20, { ...options, random: () => 0.5 }), 5000);
  });
});

/** Reads a stream to its end; the ConnectError it ended with, if any. */
async function drain(iterable: AsyncIterable<unknown>): Promise<ConnectError | undefined> {
  try {
    for await (const _ of iterable) {
    }
    return undefined;
  } catch (e) {
    return ConnectError.from(e);
  }
}

/** The states without repeats in a row: "streaming" once per attempt whatever the messages. */
function dedupe(states: string[]): string[] {
  return states.filter((s, i) => s !== states[i - 1]);
}
