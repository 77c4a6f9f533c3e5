import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { type StreamRequestSchema, StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import type { GreetingStreams } from "../src/core/stream-service.js";
import { durationFromMs } from "../src/shared/duration.js";
import { collect, grpcJsClient, grpcJsStream } from "./support/grpc-js.js";
import { decodeResponses, type GrpcExchange, grpcCall } from "./support/h2-grpc.js";
import { eventually, settled, startServer, type TestServer } from "./support/server.js";
import { envelope, requestEnvelope, streamPath } from "./support/wire.js";

// The differential suite of the lean road for gRPC (src/entries/lean-rpc/): the same
// raw HTTP/2 requests go to a server with the fast path and to one without
// (connect-node), and what comes back must be the same: messages (timestamps
// aside), status, message, headers, trailers, how the stream ended.

const zero = durationFromMs(0);
const maxCounter = 2n ** 64n - 1n;

/** What must match between the two paths: everything but timestamps, dates and generated request ids. */
function summary(x: GrpcExchange) {
  const { "x-request-id": requestId, ...headers } = x.headers;
  return {
    headers,
    requestId: typeof requestId === "string",
    headersEndStream: x.headersEndStream,
    trailers: x.trailers,
    flags: x.envelopes.map((e) => e.flags),
    ...(String(headers["content-type"]).includes("json")
      ? { json: x.envelopes.map((e) => ({ ...JSON.parse(e.data.toString()), timestamp: undefined })) }
      : {
          messages: decodeResponses(x).map((m) => ({
            message: m.message,
            counter: m.counter,
            timestamp: m.timestamp !== undefined && m.timestamp.seconds > 0n,
          })),
          // Each payload exactly as protobuf-es writes the message it decodes to.
          canonical: x.envelopes.map((e) =>
            Buffer.from(toBinary(StreamResponseSchema, fromBinary(StreamResponseSchema, e.data))).equals(e.data),
          ),
        }),
    leftover: x.leftover,
    rstCode: x.rstCode,
  };
}

function status(x: GrpcExchange): { code: string | undefined; message: string } {
  const t = x.trailers ?? x.headers;
  return { code: t["grpc-status"] as string | undefined, message: decodeURIComponent(String(t["grpc-message"] ?? "")) };
}

function req(init: MessageInitShape<typeof StreamRequestSchema>): Buffer {
  return requestEnvelope({ interval: zero, ...init });
}

interface Row {
  name: string;
  body: Buffer;
  headers?: Record<string, string | undefined>;
  /** The gRPC status both paths must end with, so that two equal wrong answers do not pass; undefined: plain HTTP error. */
  code: string | undefined;
  messages?: number;
}

const rows: Row[] = [
  { name: "normal", body: req({ name: "Bob", limit: 3n }), code: "0", messages: 3 },
  { name: "empty name", body: req({ limit: 1n }), code: "0", messages: 1 },
  { name: "limit", body: req({ name: "Ann", limit: 25n }), code: "0", messages: 25 },
  { name: "start_at", body: req({ name: "Ann", limit: 3n, startAt: 41n }), code: "0", messages: 3 },
  { name: "start_at up to 2^64-1", body: req({ limit: 2n, startAt: maxCounter - 1n }), code: "0", messages: 2 },
  { name: "unicode name", body: req({ name: "Zoë 🐙", limit: 2n }), code: "0", messages: 2 },
  {
    name: "application/grpc+proto",
    body: req({ limit: 2n }),
    headers: { "content-type": "application/grpc+proto" },
    code: "0",
    messages: 2,
  },
  {
    name: "x-request-id echoed",
    body: req({ limit: 1n }),
    headers: { "x-request-id": "abc-123" },
    code: "0",
    messages: 1,
  },
  {
    name: "insane x-request-id",
    body: req({ limit: 1n }),
    headers: { "x-request-id": "a b\u00e9" },
    code: "0",
    messages: 1,
  },
  {
    name: "grpc-accept-encoding gzip",
    body: req({ limit: 2n }),
    headers: { "grpc-accept-encoding": "identity,deflate,gzip" },
    code: "0",
    messages: 2,
  },
  {
    name: "grpc-encoding identity",
    body: req({ limit: 1n }),
    headers: { "grpc-encoding": "identity" },
    code: "0",
    messages: 1,
  },
  { name: "no te header", body: req({ limit: 1n }), headers: { te: undefined }, code: "0", messages: 1 },
  { name: "name > 100 chars", body: req({ name: "x".repeat(101), limit: 1n }), code: "3" },
  { name: "name with control chars", body: req({ name: "a\nb", limit: 1n }), code: "3" },
  { name: "interval < 0", body: req({ interval: durationFromMs(-1000), limit: 1n }), code: "3" },
  { name: "interval > 1h", body: req({ interval: durationFromMs(3_601_000), limit: 1n }), code: "3" },
  { name: "start_at + limit past 2^64-1", body: req({ startAt: maxCounter, limit: 2n }), code: "3" },
  { name: "oversize request > 4 KiB", body: req({ name: "x".repeat(5000) }), code: "8" },
  { name: "oversize request of 256 KiB, past the window", body: req({ name: "x".repeat(256 * 1024) }), code: "8" },
  { name: "oversize length prefix alone", body: envelope(Buffer.alloc(0), 0, 1 << 20), code: "8" },
  { name: "malformed protobuf", body: envelope(Buffer.from([0x0a, 0x7f, 0x41])), code: "13" },
  { name: "wrong wire type", body: envelope(Buffer.from([0x0d, 1, 2, 3, 4])), code: "13" },
  { name: "truncated envelope", body: req({ name: "Bob" }).subarray(0, 7), code: "3" },
  { name: "truncated envelope header", body: Buffer.from([0, 0, 0]), code: "3" },
  { name: "length prefix without payload", body: envelope(Buffer.alloc(0), 0, 10), code: "12" },
  { name: "empty body", body: Buffer.alloc(0), code: "12" },
  { name: "two envelopes", body: Buffer.concat([req({ limit: 1n }), req({ limit: 1n })]), code: "12" },
  { name: "compressed flag without grpc-encoding", body: requestEnvelope({ limit: 1n }, 1), code: "13" },
  { name: "grpc-timeout invalid", body: req({ limit: 1n }), headers: { "grpc-timeout": "1x" }, code: "3" },
  { name: "grpc-timeout too long", body: req({ limit: 1n }), headers: { "grpc-timeout": "123456789S" }, code: "3" },
  { name: "grpc-timeout 0", body: req({ limit: 1n }), headers: { "grpc-timeout": "0m" }, code: "4" },
  { name: "grpc-timeout ample", body: req({ limit: 2n }), headers: { "grpc-timeout": "10S" }, code: "0", messages: 2 },
  // Not for the fast path: these go to connect-node on both servers.
  {
    name: "grpc-encoding gzip",
    body: req({ limit: 1n }),
    headers: { "grpc-encoding": "gzip" },
    code: "0",
    messages: 1,
  },
  { name: "grpc-encoding unknown", body: req({ limit: 1n }), headers: { "grpc-encoding": "zstd" }, code: "12" },
  {
    name: "another path",
    body: req({ limit: 1n }),
    headers: { ":path": "/stream.v1.StreamService/Nope" },
    code: undefined,
  },
  {
    name: "a query string",
    body: req({ limit: 1n }),
    headers: { ":path": `${streamPath}?x=1` },
    code: "0",
    messages: 1,
  },
  { name: "method PUT", body: req({ limit: 1n }), headers: { ":method": "PUT" }, code: undefined },
  {
    name: "content-type text/plain",
    body: req({ limit: 1n }),
    headers: { "content-type": "text/plain" },
    code: undefined,
  },
  {
    name: "an Origin header",
    body: req({ limit: 1n }),
    headers: { origin: "https://example.com" },
    code: "0",
    messages: 1,
  },
  {
    name: "application/grpc+json",
    body: envelope(Buffer.from('{"limit":"1"}')),
    headers: { "content-type": "application/grpc+json" },
    code: "0",
    messages: 1,
  },
];

describe("gRPC fast path", () => {
  let on: TestServer;
  let off: TestServer;
  before(async () => {
    [on, off] = await Promise.all([startServer({ fastPath: true }), startServer({ fastPath: false })]);
  });
  after(async () => {
    await Promise.all([on.close(), off.close()]);
  });

  it("should serve Stream itself, without connect-node's generator", async () => {
    // connect-node's generator gives the core a sink that holds one message; the lean road's batches and flushes.
    const opened = (srv: TestServer) => {
      const seen: number[] = [];
      const start = srv.server.streams.start.bind(srv.server.streams);
      srv.server.streams.start = (admission, sink) => {
        if (sink.flush === undefined) seen.push(1);
        return start(admission, sink);
      };
      return { seen, restore: () => delete (srv.server.streams as Partial<GreetingStreams>).start };
    };
    const a = opened(on);
    const b = opened(off);
    try {
      await grpcCall(on.url, req({ limit: 2n }));
      await grpcCall(off.url, req({ limit: 2n }));
      assert.deepEqual(a.seen, []);
      assert.deepEqual(b.seen, [1]);
    } finally {
      a.restore();
      b.restore();
    }
  });

  describe("answers like connect-node", () => {
    for (const row of rows) {
      it(`should match for ${row.name}`, async () => {
        const options = row.headers ? { headers: row.headers } : {};
        const [a, b] = await Promise.all([grpcCall(on.url, row.body, options), grpcCall(off.url, row.body, options)]);
        assert.deepEqual(summary(a), summary(b));
        assert.equal(status(a).code, row.code, status(a).message);
        assert.equal(a.envelopes.length, row.messages ?? 0);
        const id = row.headers?.["x-request-id"];
        if (id === "abc-123") assert.equal(a.headers["x-request-id"], id);
      });
    }
  });

  it("should match connect-node when the deadline passes mid-stream", async () => {
    const body = requestEnvelope({ name: "D", interval: durationFromMs(40) });
    const options = { headers: { "grpc-timeout": "150m" } };
    const [a, b] = await Promise.all([grpcCall(on.url, body, options), grpcCall(off.url, body, options)]);
    assert.deepEqual(a.trailers, b.trailers);
    assert.deepEqual(status(a), { code: "4", message: "the operation timed out" });
    assert.ok(a.envelopes.length >= 2 && b.envelopes.length >= 2);
    await eventually(() => on.server.streams.liveCount === 0, 1000, "no live streams");
  });

  it("should match connect-node for a failure after the first message", async () => {
    // The second write throws, as an encoder or a socket might: the stream ends with "internal error" on both roads.
    const breakSecondWrite = (srv: TestServer) => {
      const streams = srv.server.streams;
      const start = streams.start.bind(streams);
      streams.start = (admission, sink) => {
        let writes = 0;
        return start(admission, {
          write(counter, millis) {
            if (++writes === 2) throw new Error("disk on fire");
            return sink.write(counter, millis);
          },
          end: (error) => sink.end(error),
        });
      };
      return () => delete (streams as Partial<GreetingStreams>).start;
    };
    const restore = [breakSecondWrite(on), breakSecondWrite(off)];
    try {
      const body = req({ limit: 5n });
      const [a, b] = await Promise.all([grpcCall(on.url, body), grpcCall(off.url, body)]);
      assert.deepEqual(summary(a), summary(b));
      assert.deepEqual(status(a), { code: "13", message: "internal error" });
      assert.equal(a.envelopes.length, 1);
    } finally {
      for (const r of restore) r();
    }
  });

  describe("with the client going away", () => {
    for (const how of ["RST_STREAM CANCEL", "session destroyed"] as const) {
      it(`should end the stream at once on ${how}, on both paths`, async () => {
        for (const srv of [on, off]) {
          const body = requestEnvelope({ name: "C", interval: durationFromMs(60_000) });
          const x = await grpcCall(srv.url, body, {
            onFirst: (r, session) =>
              how === "session destroyed" ? session.destroy() : r.close(http2.constants.NGHTTP2_CANCEL),
          });
          assert.equal(x.envelopes.length, 1);
          await eventually(() => srv.server.streams.liveCount === 0, 1000, "the stream to end");
          assert.equal(srv.server.streams.pacer.pending, 0);
          const ended = srv.logs.findLast((l) => l.msg === "stream ended" && l.name === "C");
          assert.equal(ended?.reason, "cancelled");
        }
      });
    }
  });

  describe("with a server shutting down", () => {
    it("should end open streams with UNAVAILABLE like connect-node", async () => {
      const results: GrpcExchange[] = [];
      for (const fastPath of [true, false]) {
        const srv = await startServer({ fastPath });
        let first!: () => void;
        const gotFirst = new Promise<void>((resolve) => {
          first = resolve;
        });
        const call = grpcCall(srv.url, requestEnvelope({ name: "S", interval: durationFromMs(60_000) }), {
          onFirst: () => first(),
        });
        await gotFirst;
        await srv.close();
        results.push(await call);
      }
      const [a, b] = results as [GrpcExchange, GrpcExchange];
      assert.deepEqual(summary(a), summary(b));
      assert.deepEqual(status(a), { code: "14", message: "server is shutting down" });
    });
  });

  describe("with a client that stops reading", () => {
    for (const fastPath of [true, false]) {
      it(`should not buffer without bound: the generator waits for the window (${fastPath ? "fast path" : "connect-node"})`, async () => {
        const srv = await startServer({ fastPath });
        const session = http2.connect(srv.url, { settings: { initialWindowSize: 1024 } });
        try {
          const stream = session.request({
            ":method": "POST",
            ":path": streamPath,
            "content-type": "application/grpc",
          });
          stream.pause();
          stream.end(req({ name: "slow" }));
          await eventually(() => srv.server.streams.messagesSent > 0, 2000, "the first message");
          const counter = () => srv.server.streams.messagesSent;
          const stalled = await settled(counter, 300, 10_000, "the generator to pause");
          // Each message is ~60 bytes: the stream's and the session's buffers hold a few hundred, not millions.
          assert.ok(stalled < 2000, `sent ${stalled} messages into a 1 KiB window`);
          stream.resume();
          await eventually(() => counter() > stalled + 1000, 5000, "streaming to resume");
          stream.close(http2.constants.NGHTTP2_CANCEL);
          await eventually(() => srv.server.streams.liveCount === 0, 1000, "the stream to end");
        } finally {
          session.destroy();
          await srv.close();
        }
      });
    }
  });

  describe("with @grpc/grpc-js as the client", () => {
    // Streaming, INVALID_ARGUMENT, deadlines and cancel with grpc-js are test/grpc-js.test.ts's, which runs
    // on both paths in CI; here: both paths give grpc-js the same error text.
    it("should report a bad request as INVALID_ARGUMENT with the same details on both paths", async () => {
      const details: string[] = [];
      for (const srv of [on, off]) {
        const c = grpcJsClient(srv.port);
        try {
          const { error } = await collect(grpcJsStream(c, { name: "x".repeat(101) }));
          assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
          details.push(error?.details ?? "");
        } finally {
          c.close();
        }
      }
      assert.equal(details.length, 2);
      assert.equal(details[0], details[1]);
    });
  });
});
