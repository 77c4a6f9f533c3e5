import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { resumeStream, type StreamCaller } from "../packages/client/src/index.js";
import { jitteredAge } from "../src/server/connection-age.js";
import { durationFromMs } from "../src/shared/duration.js";
import { decodeResponses } from "./support/h2-grpc.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { grpcRequestHeaders, requestEnvelope, splitEnvelopes } from "./support/wire.js";

// --max-connection-age (src/server/session-guard.ts, connection-age.ts): an
// HTTP/2 connection past its age gets GOAWAY NO_ERROR, its open streams go on
// for the grace period and then end with UNAVAILABLE; an HTTP/1.1 connection
// past its age gets `Connection: close` on its next response.

const AGE_MS = 1000;
const GRACE_MS = 600;

describe("--max-connection-age", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ maxConnectionAgeMs: AGE_MS, maxConnectionAgeGraceMs: GRACE_MS });
  });
  after(() => srv.close());

  it("should jitter the age by at most 10% either way", () => {
    assert.equal(
      jitteredAge(1000, () => 0),
      900,
    );
    assert.equal(
      jitteredAge(1000, () => 0.5),
      1000,
    );
    assert.ok(jitteredAge(1000, () => 0.999_999) < 1100);
  });

  it("should send GOAWAY NO_ERROR at the age, keep the open stream for the grace, then end it with UNAVAILABLE", async () => {
    const session = http2.connect(srv.url);
    session.on("error", () => {});
    const opened = performance.now();
    let goaway: { code: number; lastStreamId: number; atMs: number } | undefined;
    // The first: Node sends another as it destroys the session.
    session.on("goaway", (code, lastStreamId) => {
      goaway ??= { code, lastStreamId, atMs: performance.now() - opened };
    });
    const arrivals: number[] = [];
    let trailers: http2.IncomingHttpHeaders | undefined;
    const req = session.request(grpcRequestHeaders());
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      chunks.push(c);
      arrivals.push(performance.now() - opened);
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("error", () => {});
    req.end(requestEnvelope({ name: "aging", interval: durationFromMs(100) }));
    const closedAt = await new Promise<number>((resolve) =>
      session.on("close", () => resolve(performance.now() - opened)),
    );

    assert.ok(goaway !== undefined, "no GOAWAY");
    assert.equal(goaway.code, http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(goaway.lastStreamId, 1, "the GOAWAY names the stream it keeps");
    assert.ok(goaway.atMs >= AGE_MS * 0.9 - 50, `GOAWAY after ${goaway.atMs.toFixed(0)} ms, before the age`);
    assert.ok(goaway.atMs < AGE_MS * 1.1 + 500, `GOAWAY after ${goaway.atMs.toFixed(0)} ms`);
    // The stream went on after the GOAWAY, through the grace period.
    const afterGoaway = arrivals.filter((t) => t > (goaway?.atMs ?? 0)).length;
    assert.ok(afterGoaway >= 3, `${afterGoaway} messages after the GOAWAY`);
    assert.equal(trailers?.["grpc-status"], String(Code.Unavailable));
    assert.equal(decodeURIComponent(String(trailers?.["grpc-message"])), "connection reached its maximum age");
    assert.ok(closedAt - goaway.atMs >= GRACE_MS - 50, `closed ${(closedAt - goaway.atMs).toFixed(0)} ms after GOAWAY`);
    const counters = decodeResponses({
      headers: {},
      headersEndStream: false,
      trailers,
      envelopes: splitEnvelopes(Buffer.concat(chunks)).envelopes,
      leftover: 0,
      rstCode: 0,
    }).map((m) => Number(m.counter));
    assert.deepEqual(
      counters,
      counters.map((_, i) => i),
    );
    await eventually(
      () => srv.logs.some((l) => l.msg === "http2 connection closed" && l.reason === "max_age"),
      2000,
      "the guard's log line",
    );
    // The stream's own end: the server's age limit, not a shutdown.
    assert.ok(
      srv.logs.some((l) => l.msg === "stream ended" && l.name === "aging" && l.reason === "max_age"),
      "the stream ended as max_age",
    );
  });

  it("should let a resuming gRPC client go on over new connections with no gap and no duplicate", async () => {
    const client = createClient(StreamService, createGrpcTransport({ baseUrl: srv.url }));
    const wire: number[] = [];
    const breaks: ConnectError[] = [];
    const limit = 40;
    const tapped: StreamCaller = {
      async *stream(request, options) {
        try {
          for await (const m of client.stream(request, options)) {
            // Off the wire, before resumeStream() could drop a duplicate.
            wire.push(Number(m.counter));
            yield m;
          }
        } catch (e) {
          breaks.push(ConnectError.from(e));
          throw e;
        }
      },
    };
    let received = 0;
    const request = { name: "resumer", interval: durationFromMs(100), limit: BigInt(limit) };
    for await (const _ of resumeStream(tapped, request, { initialBackoffMs: 50 })) received++;
    assert.equal(received, limit);
    assert.deepEqual(
      wire,
      Array.from({ length: limit }, (_, i) => i),
    );
    // 4 s of stream over connections that last 1.5 s or so: cut twice at least, each time by the age.
    assert.ok(breaks.length >= 2, `${breaks.length} breaks`);
    for (const b of breaks) {
      assert.equal(b.code, Code.Unavailable, b.message);
      assert.equal(b.rawMessage, "connection reached its maximum age");
    }
    const peers = new Set(
      srv.logs.filter((l) => l.msg === "stream started" && l.name === "resumer").map((l) => l.peer),
    );
    assert.equal(peers.size, breaks.length + 1, "each resume came on a new connection");
  });

  it("should answer Connection: close on the first HTTP/1.1 response past the age, and keep the connection before", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ connection: string | undefined; socket: object }>((resolve, reject) => {
        const req = http.get(`${srv.url}/healthz`, { agent }, (res) => {
          res.resume();
          res.on("end", () => resolve({ connection: res.headers.connection, socket: req.socket as object }));
        });
        req.on("error", reject);
      });
    const first = await get();
    assert.equal(first.connection, "keep-alive");
    // Within --keep-alive-timeout (5 s), so the same connection carries the next request.
    await new Promise((resolve) => setTimeout(resolve, AGE_MS * 1.1 + 100));
    const second = await get();
    assert.equal(second.socket, first.socket, "the second request went over the first connection");
    assert.equal(second.connection, "close");
    const third = await get();
    assert.notEqual(third.socket, first.socket);
    assert.equal(third.connection, "keep-alive");
    agent.destroy();
  });
});

describe("without --max-connection-age", () => {
  it("should keep a connection that carries a stream past any age", async () => {
    const srv = await startServer();
    try {
      const session = http2.connect(srv.url);
      let goaway = false;
      session.on("goaway", () => {
        goaway = true;
      });
      const req = session.request(grpcRequestHeaders());
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.end(requestEnvelope({ name: "ageless", interval: durationFromMs(100), limit: 25n }));
      await new Promise((resolve) => req.on("close", resolve));
      assert.equal(splitEnvelopes(Buffer.concat(chunks)).envelopes.length, 25);
      assert.equal(goaway, false);
      session.close();
    } finally {
      await srv.close();
    }
  });
});
