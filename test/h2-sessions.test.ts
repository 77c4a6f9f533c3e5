import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import {
  connectRaw,
  ErrorCode,
  Flag,
  FrameType,
  firstGoaway,
  frame,
  getRequest,
  goaways,
  headerBlock,
  headerFields,
  type RawH2,
  requestHeaders,
  rstStream,
} from "./support/h2-frames.js";
import { type ServerProc, startServerProcess, stop } from "./support/process.js";
import { grpcRequestHeaders, requestEnvelope, streamPath } from "./support/wire.js";

// Every HTTP/2 connection gets an end (src/session-guard.ts). nghttp2 ends a
// session for a peer's protocol violation with GOAWAY but tells JavaScript
// nothing and never closes the socket; idle sessions were kept forever. Each
// test speaks raw frames to a server process and counts its file descriptors.

function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves with how long the server took to close the connection, or rejects after `timeoutMs`. */
async function closedWithin(c: RawH2, timeoutMs: number): Promise<number> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    c.closed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the server kept the connection over ${timeoutMs} ms`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  return performance.now() - started;
}

/** A request that each entry takes: the gRPC lean path (with --fast-path on), or connect-node. */
const entries: Array<[string, (id: number) => Buffer]> = [
  ["gRPC on Stream", (id) => requestHeaders(id, headerFields(grpcRequestHeaders()), { endStream: true })],
  [
    "Connect on Stream",
    (id) =>
      requestHeaders(id, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", streamPath],
        [":authority", "localhost"],
        ["content-type", "application/connect+json"],
      ]),
  ],
  ["GET /healthz", (id) => getRequest(id, "/healthz")],
];

describe("HTTP/2 connections the server ends", () => {
  let srv: ServerProc;
  let baseline: number;
  before(async () => {
    srv = await startServerProcess(["--h2-ping-timeout", "1s", "--h2-idle-timeout", "2s"]);
    // One full call first, so that lazily opened descriptors are in the baseline.
    const c = http2.connect(srv.url);
    await new Promise<void>((resolve, reject) => {
      const req = c.request({ ":path": "/healthz" });
      req.on("error", reject);
      req.resume();
      req.on("end", () => resolve());
    });
    c.close();
    baseline = fds(srv.child.pid ?? 0);
  });
  after(() => stop(srv));

  describe("with rapid reset (HEADERS then RST_STREAM, CVE-2023-44487)", () => {
    for (const [entry, request] of entries) {
      it(`should answer 1,500 pairs in one write with GOAWAY ENHANCE_YOUR_CALM and close (${entry})`, async () => {
        const c = await connectRaw(srv.port);
        const burst: Buffer[] = [];
        for (let i = 0; i < 1500; i++) burst.push(request(1 + 2 * i), rstStream(1 + 2 * i));
        c.socket.write(Buffer.concat(burst));
        c.socket.end();
        await closedWithin(c, 2000);
        assert.equal(goaways(c)[0], ErrorCode.ENHANCE_YOUR_CALM);
        // The budget (200 resets) cut it long before nghttp2's own limit of 1,000.
        const lastStreamId = firstGoaway(c)?.lastStreamId ?? 0;
        assert.ok(lastStreamId < 2 * 1000, `the server went on to stream ${lastStreamId}`);
      });
    }

    it("should cut a peer that resets one stream per write, and leave a client that resets a few alone", async () => {
      const c = await connectRaw(srv.port);
      for (let i = 0; i < 400 && !c.socket.destroyed; i++) {
        c.socket.write(Buffer.concat([getRequest(1 + 2 * i, "/healthz"), rstStream(1 + 2 * i)]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      await closedWithin(c, 2000);
      assert.equal(goaways(c)[0], ErrorCode.ENHANCE_YOUR_CALM);

      const polite = await connectRaw(srv.port);
      for (let i = 0; i < 20; i++) {
        polite.socket.write(Buffer.concat([getRequest(1 + 2 * i, "/healthz"), rstStream(1 + 2 * i)]));
      }
      polite.socket.write(getRequest(41, "/healthz"));
      await until(
        () => polite.frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 41),
        2000,
        "an answer on the polite connection",
      );
      assert.deepEqual(goaways(polite), []);
      polite.socket.destroy();
    });

    it("should leave no file descriptor behind after 100 abusive connections", async () => {
      for (let n = 0; n < 100; n++) {
        const c = await connectRaw(srv.port);
        const burst: Buffer[] = [];
        for (let i = 0; i < 300; i++) burst.push(getRequest(1 + 2 * i, "/healthz"), rstStream(1 + 2 * i));
        c.socket.write(Buffer.concat(burst));
        c.socket.end();
        await closedWithin(c, 2000);
      }
      await until(() => fds(srv.child.pid ?? 0) <= baseline, 5000, `fds back to ${baseline}`);
    });
  });

  describe("with a protocol violation nghttp2 answers by itself", () => {
    it("should close a connection that sent a 1 MiB header block (GOAWAY COMPRESSION_ERROR)", async () => {
      const c = await connectRaw(srv.port);
      const block = headerBlock([
        [":method", "GET"],
        [":scheme", "http"],
        [":path", "/healthz"],
        [":authority", "localhost"],
        ["x-big", "x".repeat(1 << 20)],
      ]);
      const frames: Buffer[] = [];
      for (let offset = 0; offset < block.length; offset += 16_384) {
        const last = offset + 16_384 >= block.length;
        const type = offset === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
        const flags = (last ? Flag.END_HEADERS : 0) | (offset === 0 ? Flag.END_STREAM : 0);
        frames.push(frame(type, flags, 1, block.subarray(offset, offset + 16_384)));
      }
      c.socket.write(Buffer.concat(frames));
      // Node says nothing of it: the PING that a second of quiet brings goes unanswered, and that ends it.
      await closedWithin(c, 5000);
      assert.ok(goaways(c).length >= 1, "no GOAWAY before the close");
      assert.notEqual(goaways(c)[0], ErrorCode.NO_ERROR);
    });

    it("should close a connection whose stream is still open when nghttp2 ends the session", async () => {
      const c = await connectRaw(srv.port);
      c.socket.write(getRequest(1, "/stream?interval=3600s"));
      await until(() => c.frames.some((f) => f.type === FrameType.DATA && f.streamId === 1), 2000, "the first message");
      // A PING longer than 8 bytes: FRAME_SIZE_ERROR for the whole connection.
      c.socket.write(frame(FrameType.PING, 0, 0, Buffer.alloc(64)));
      await closedWithin(c, 5000);
      assert.ok(goaways(c).some((code) => code !== ErrorCode.NO_ERROR));
    });
  });

  describe("when idle", () => {
    it("should GOAWAY and close a connection that never opens a stream", async () => {
      const c = await connectRaw(srv.port, { answerPings: true });
      const took = await closedWithin(c, 5000);
      assert.ok(goaways(c).length >= 1, "no GOAWAY before the close");
      assert.ok(
        goaways(c).every((code) => code === ErrorCode.NO_ERROR),
        `GOAWAY codes ${goaways(c)}`,
      );
      assert.ok(took >= 1500, `closed after ${took.toFixed(0)} ms, before --h2-idle-timeout`);
    });

    it("should keep a connection whose stream waits an hour between messages", async () => {
      const c = await connectRaw(srv.port, { answerPings: true });
      const body = requestEnvelope({ name: "patient", interval: { seconds: 3600n, nanos: 0 } });
      c.socket.write(requestHeaders(1, headerFields(grpcRequestHeaders()), { endStream: false }));
      c.socket.write(frame(FrameType.DATA, Flag.END_STREAM, 1, body));
      // Three idle timeouts, each with its PING: the stream is what counts, not traffic.
      await new Promise((resolve) => setTimeout(resolve, 6000));
      assert.equal(c.socket.destroyed, false);
      assert.deepEqual(goaways(c), []);
      c.socket.destroy();
    });

    it("should close a connection that stops answering PINGs", async () => {
      const c = await connectRaw(srv.port);
      c.socket.write(getRequest(1, "/stream?interval=3600s"));
      // A raw peer answers no PING: the probe a second after the start goes unanswered.
      const took = await closedWithin(c, 5000);
      assert.ok(
        c.frames.some((f) => f.type === FrameType.PING),
        "no PING was sent",
      );
      assert.ok(took < 4000, `closed after ${took.toFixed(0)} ms`);
    });
  });
});
