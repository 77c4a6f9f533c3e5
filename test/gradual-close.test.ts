import assert from "node:assert/strict";
import { once } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { closeGradually } from "../src/server/gradual-close.js";

// A dropped connection's streams are closed a slice at a time
// (src/server/gradual-close.ts), through Node's own listener, found by name.
// These fail when a Node upgrade renames it (then streams close at once
// again) or when the slices lose a stream or the session's end.

const STREAMS = 500;

describe("closing the streams of a dropped connection in slices", () => {
  it("should find Node's close listener, close every stream of the dropped connection, then its session", async () => {
    const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
    const found: boolean[] = [];
    const closedStreams: number[] = [];
    let sessionClosed: Promise<unknown> | undefined;
    server.on("session", (session) => {
      found.push(closeGradually(session));
      sessionClosed = once(session, "close");
    });
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200 });
      stream.write("open");
      stream.on("close", () => closedStreams.push(performance.now()));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    const client = http2.connect(`http://127.0.0.1:${port}`, { settings: { maxConcurrentStreams: 1000 } });
    client.on("error", () => {});
    let responded = 0;
    const all = new Promise<void>((resolve) => {
      for (let i = 0; i < STREAMS; i++) {
        const req = client.request({ ":path": "/" });
        req.on("error", () => {});
        req.on("response", () => {
          if (++responded === STREAMS) resolve();
        });
      }
    });
    await all;
    client.destroy();
    await sessionClosed;
    server.close();
    assert.deepEqual(found, [true], "Node's socketOnClose listener was found");
    assert.equal(closedStreams.length, STREAMS, "every stream closed");
  });
});
