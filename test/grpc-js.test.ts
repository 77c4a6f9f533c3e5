import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { grpcJsStream as call, collect, grpcJsClient } from "./support/grpc-js.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// @grpc/grpc-js is the plain gRPC library that most Node services use: if it
// streams and cancels against us, so do gRPC clients that are not Connect.

describe("an @grpc/grpc-js client", () => {
  let srv: TestServer;
  let client: grpc.Client;
  before(async () => {
    srv = await startServer();
    client = grpcJsClient(srv.port);
  });
  after(async () => {
    client.close();
    await srv.close();
  });

  it("should stream greetings from start_at and end OK at the limit", async () => {
    const { messages, error } = await collect(
      call(client, {
        name: "Grace",
        limit: 3n,
        startAt: 41n,
        interval: { $typeName: "google.protobuf.Duration", seconds: 0n, nanos: 1_000_000 },
      }),
    );
    assert.equal(error, undefined);
    assert.deepEqual(
      messages.map((m) => m.message),
      [41, 42, 43].map((n) => `Hello Grace, this is ${n} time stream message.`),
    );
  });

  it("should cancel: the server ends the stream at once", async () => {
    const stream = call(client, {
      name: "Grace cancels",
      interval: { $typeName: "google.protobuf.Duration", seconds: 60n, nanos: 0 },
    });
    const done = collect(stream);
    await eventually(() => srv.server.streams.liveCount === 1, 2000, "the stream to open");
    await new Promise((resolve) => stream.once("data", resolve));
    stream.cancel();
    const { error } = await done;
    assert.equal(error?.code, grpc.status.CANCELLED);
    await eventually(() => srv.server.streams.liveCount === 0, 100, "the live count to return to 0");
    assert.equal(srv.server.streams.pacer.pending, 0);
  });

  it("should end later calls on the same connection OK after one was cancelled", async () => {
    const cancelled = call(client, {
      name: "Grace cancels first",
      interval: { $typeName: "google.protobuf.Duration", seconds: 60n, nanos: 0 },
    });
    const done = collect(cancelled);
    await new Promise((resolve) => cancelled.once("data", resolve));
    cancelled.cancel();
    assert.equal((await done).error?.code, grpc.status.CANCELLED);
    for (let i = 0; i < 3; i++) {
      const { messages, error } = await collect(call(client, { name: `Grace again ${i}`, limit: 2n }));
      assert.equal(error, undefined, "ended with status OK");
      assert.equal(messages.length, 2);
    }
  });

  it("should get INVALID_ARGUMENT with the field named", async () => {
    const { error } = await collect(call(client, { name: "x".repeat(101) }));
    assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(error?.details ?? "", /^name must be at most 100 characters \(got 101\)$/);
  });

  it("should get DEADLINE_EXCEEDED when its deadline passes", async () => {
    const { messages, error } = await collect(
      call(
        client,
        { name: "Grace waits", interval: { $typeName: "google.protobuf.Duration", seconds: 0n, nanos: 100_000_000 } },
        { deadline: Date.now() + 350 },
      ),
    );
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(messages.length >= 3);
    await eventually(() => srv.server.streams.liveCount === 0, 500, "the live count to return to 0");
  });

  it("should get UNIMPLEMENTED for a method the server does not have", async () => {
    const Other = grpc.makeGenericClientConstructor(
      {
        nope: {
          path: "/stream.v1.StreamService/Nope",
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      "Other",
    );
    const other = new Other(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
    const error = await new Promise<grpc.ServiceError | null>((resolve) =>
      (other as unknown as { nope: (b: Buffer, cb: (e: grpc.ServiceError | null) => void) => void }).nope(
        Buffer.alloc(0),
        resolve,
      ),
    );
    other.close();
    assert.equal(error?.code, grpc.status.UNIMPLEMENTED);
  });
});
