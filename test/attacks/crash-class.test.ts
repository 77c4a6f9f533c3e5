import assert from "node:assert/strict";
import * as http2 from "node:http2";
import * as net from "node:net";
import { describe, it } from "node:test";
import { h2Get, startTarget } from "../support/attack.js";
import {
  connectRaw,
  ErrorCode,
  Flag,
  FrameType,
  frame,
  headerFields,
  requestHeaders,
  rstStream,
} from "../support/h2-frames.js";
import { until } from "../support/server-watch.js";
import { grpcRequestHeaders, requestEnvelope, streamPath } from "../support/wire.js";

// No client can end the process. Every stream, session and socket has its
// 'error' handled from the moment Node makes it, on every road and in every
// state: waiting a turn (a connection that resets streams gets its new
// ones a turn later), refused, mid-stream, ending. These are the frames that
// once ended it, each in one write, so that nghttp2 sees them in one read:
// a burst of resets past the budget (the session is destroyed with an
// error, which Node emits on each of its streams) with fresh streams behind
// it, and streams reset by the peer with every error code while they wait.
// And requests whose body never comes, on every road and both HTTP versions:
// the timer that answers them 408 once threw over HTTP/2 (a Connection
// header, which HTTP/2 forbids), and a throw in a timer ends a process.

const grpcHeaders = headerFields(grpcRequestHeaders());

/** `resets` HEADERS+RST pairs, then `fresh` streams that stay open, on one connection in one write. */
async function burst(port: number, resets: number, fresh: number, code: number): Promise<void> {
  const c = await connectRaw(port, { answerPings: true });
  const frames: Buffer[] = [];
  let id = 1;
  for (let i = 0; i < resets; i++, id += 2) {
    frames.push(requestHeaders(id, grpcHeaders, { endStream: false }), rstStream(id, code));
  }
  const body = requestEnvelope({ name: "after", interval: { seconds: 3600n, nanos: 0 } });
  for (let i = 0; i < fresh; i++, id += 2) {
    frames.push(
      requestHeaders(id, grpcHeaders, { endStream: false }),
      frame(FrameType.DATA, Flag.END_STREAM, id, body),
    );
  }
  c.socket.write(Buffer.concat(frames));
  await Promise.race([c.closed, new Promise((resolve) => setTimeout(resolve, 1500))]);
  c.socket.destroy();
}

describe("the crash class: errors no emitter may leak", () => {
  for (const [name, code] of Object.entries(ErrorCode)) {
    it(`should outlive a burst past the reset budget with fresh streams behind it, reset with ${name}`, async () => {
      const target = await startTarget();
      try {
        // 250 resets pass the budget of 200 (the session is destroyed with an error); the 20 behind them wait a turn.
        await burst(target.srv.port, 250, 20, code);
        // And streams the peer resets with this code while they wait a turn on a suspicious connection.
        await burst(target.srv.port, 40, 0, code);
        assert.equal(target.srv.child.exitCode, null, `the server exited: ${target.srv.stderr()}`);
        assert.equal(await h2Get(target.srv.url, "/healthz"), 200);
        await until(
          () => target.srv.lines.some((l) => l.includes('"reason":"resets"')),
          (cut) => cut,
          5000,
          "the resetting connection to be cut",
        );
        assert.doesNotMatch(target.srv.stderr(), /Error|Emitted 'error'/);
      } finally {
        await target.stop();
      }
    });
  }

  it("should outlive requests whose body never comes, on every road, over HTTP/2 and HTTP/1.1", async () => {
    const target = await startTarget(["--headers-timeout", "1s"]);
    try {
      const roads: Array<Record<string, string>> = [
        { ":path": streamPath, "content-type": "application/grpc", te: "trailers" },
        { ":path": streamPath, "content-type": "application/connect+proto" },
        { ":path": streamPath, "content-type": "application/grpc-web+proto" },
        { ":path": streamPath, "content-type": "application/grpc-web-text" },
        { ":path": streamPath, "content-type": "application/json" },
        { ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "content-type": "application/grpc" },
        { ":path": "/stream", "content-type": "application/json" },
        { ":path": "/nope", "content-type": "text/plain" },
      ];
      const session = http2.connect(target.srv.url);
      session.on("error", () => {});
      const answers = roads.map(
        (headers) =>
          new Promise<unknown>((resolve) => {
            const req = session.request({ ":method": "POST", ...headers });
            req.on("error", () => resolve("reset"));
            req.on("response", (h) => resolve(h[":status"]));
            req.on("close", () => resolve("closed"));
          }),
      );
      const h1 = roads.map(
        (headers) =>
          new Promise<string>((resolve) => {
            const s = net.connect(target.srv.port, "127.0.0.1", () =>
              s.write(
                `POST ${headers[":path"]} HTTP/1.1\r\nHost: x\r\nContent-Type: ${headers["content-type"]}\r\nContent-Length: 100\r\n\r\n`,
              ),
            );
            let head = "";
            s.on("data", (c: Buffer) => {
              head += c.toString("latin1");
            });
            s.on("error", () => {});
            s.on("close", () => resolve(head.slice(0, 12)));
          }),
      );
      const settled = await Promise.all([...answers, ...h1]);
      session.destroy();
      assert.equal(target.srv.child.exitCode, null, `the server exited: ${target.srv.stderr()}`);
      assert.equal(await h2Get(target.srv.url, "/healthz"), 200);
      // Each got an answer or an end; none hung past the test.
      assert.equal(settled.length, roads.length * 2);
      assert.doesNotMatch(target.srv.stderr(), /Error|Emitted 'error'/);
    } finally {
      await target.stop();
    }
  });
});
