import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { MAX_COUNTER } from "../src/core/greeting.js";
import { clientCases, streamClient } from "./support/clients.js";
import { grpcCall, grpcStatusOf } from "./support/h2-grpc.js";
import { startServer, type TestServer } from "./support/server.js";
import { envelope, requestEnvelope, streamPath } from "./support/wire.js";

async function errorOf(iterable: AsyncIterable<unknown>): Promise<ConnectError> {
  try {
    for await (const _ of iterable) {
    }
  } catch (e) {
    return ConnectError.from(e);
  }
  assert.fail("expected the stream to fail");
}

describe("bad input", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  const rows: {
    input: string;
    request: Parameters<ReturnType<typeof streamClient>["stream"]>[0];
    field: RegExp;
    binaryOnly?: boolean;
  }[] = [
    {
      input: "a name longer than 100 characters",
      request: { name: "x".repeat(101) },
      field: /^name must be at most 100 characters \(got 101\)$/,
    },
    {
      input: "a name with a control character",
      request: { name: "Bob\u0007" },
      field: /^name must not contain control characters$/,
    },
    { input: "a name with a newline", request: { name: "Bob\nINFO forged" }, field: /^name / },
    { input: "a negative interval", request: { interval: { seconds: -1n, nanos: 0 } }, field: /^interval / },
    { input: "an interval above one hour", request: { interval: { seconds: 3601n, nanos: 0 } }, field: /^interval / },
    {
      input: "an interval with out-of-range nanos",
      request: { interval: { seconds: 0n, nanos: 2_000_000_000 } },
      field: /^interval /,
      // JSON cannot carry such a duration: the client refuses to send it.
      binaryOnly: true,
    },
    {
      input: "start_at + limit past the counter's range",
      request: { startAt: MAX_COUNTER, limit: 2n },
      field: /^start_at plus limit /,
    },
  ];

  for (const c of clientCases) {
    describe(`over ${c.name}`, () => {
      for (const row of rows.filter((r) => c.binary || !r.binaryOnly)) {
        it(`should answer INVALID_ARGUMENT naming the field for ${row.input}`, async () => {
          const err = await errorOf(streamClient(c, srv.url).stream(row.request));
          assert.equal(err.code, Code.InvalidArgument);
          assert.match(err.rawMessage, row.field);
        });
      }

      it("should answer RESOURCE_EXHAUSTED for a request larger than the bound", async () => {
        const err = await errorOf(streamClient(c, srv.url).stream({ name: "x".repeat(5000) }));
        assert.equal(err.code, Code.ResourceExhausted);
      });
    });
  }

  it("should accept a name of exactly 100 characters, counting an emoji as one", async () => {
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    const name = "😀".repeat(100);
    for await (const m of client.stream({ name, limit: 1n })) {
      assert.equal(m.message, `Hello ${name}, this is 0 time stream message.`);
    }
  });

  it("should accept the last counter of the range and end OK there", async () => {
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    const got: bigint[] = [];
    for await (const m of client.stream({ startAt: MAX_COUNTER - 1n, interval: { seconds: 0n, nanos: 0 } })) {
      got.push(m.counter);
    }
    assert.deepEqual(got, [MAX_COUNTER - 1n, MAX_COUNTER]);
  });

  describe("over raw gRPC", () => {
    // connect-node, like grpc-go, reports a message it cannot decode as INTERNAL.
    it("should answer INTERNAL 'parse binary' for malformed protobuf, and keep the stack to itself", async () => {
      const res = await grpcCall(srv.url, envelope(Buffer.from([0x0a, 0xff, 0xff])));
      assert.equal(res.headers[":status"], 200);
      const status = grpcStatusOf(res);
      assert.equal(status.code, Code.Internal);
      assert.match(status.message, /^parse binary: /);
      assert.doesNotMatch(status.message, /\bat .*\.(js|ts):\d+/);
    });

    it("should answer INVALID_ARGUMENT for a truncated envelope", async () => {
      const whole = requestEnvelope({ name: "Bob" });
      const res = await grpcCall(srv.url, whole.subarray(0, whole.length - 2));
      assert.equal(grpcStatusOf(res).code, Code.InvalidArgument);
    });

    it("should answer HTTP 415 for a content type that is not gRPC", async () => {
      const res = await grpcCall(srv.url, envelope(new Uint8Array()), { headers: { "content-type": "text/plain" } });
      assert.equal(res.headers[":status"], 415);
    });

    it("should answer UNIMPLEMENTED (HTTP 404) for an unknown method", async () => {
      const res = await grpcCall(srv.url, envelope(new Uint8Array()), { path: "/stream.v1.StreamService/Nope" });
      assert.equal(res.headers[":status"], 404);
    });

    it("should answer RESOURCE_EXHAUSTED for an oversize message without reading it all", async () => {
      const res = await grpcCall(srv.url, envelope(Buffer.alloc(64 * 1024)));
      assert.equal(grpcStatusOf(res).code, Code.ResourceExhausted);
    });
  });

  describe("over the Connect protocol with fetch (HTTP/1.1)", () => {
    it("should answer invalid_argument for malformed JSON", async () => {
      const res = await fetch(srv.url + streamPath, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: new Uint8Array(envelope(Buffer.from("{not json"))),
      });
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      // The end-stream envelope (flag 2) carries the error.
      assert.equal(body[0], 2);
      const end = JSON.parse(body.subarray(5).toString());
      assert.equal(end.error.code, "invalid_argument");
    });

    it("should answer HTTP 415 for a wrong content type", async () => {
      const res = await fetch(srv.url + streamPath, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "hello",
      });
      assert.equal(res.status, 415);
    });

    it("should answer 404 with a JSON error for an unknown service", async () => {
      const res = await fetch(`${srv.url}/nope.v1.Nope/Nope`, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: new Uint8Array(envelope(Buffer.from("{}"))),
      });
      assert.equal(res.status, 404);
      assert.equal((await res.json()).code, "unimplemented");
    });
  });

  it("should keep serving after every bad request above", async () => {
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    const got = [];
    for await (const m of client.stream({ name: "Still here", limit: 1n })) got.push(m.message);
    assert.deepEqual(got, ["Hello Still here, this is 0 time stream message."]);
    assert.equal(srv.server.streams.liveCount, 0);
  });
});
