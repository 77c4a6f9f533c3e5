import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "../src/shared/duration.js";
import { clientCases, streamClient } from "./support/clients.js";
import { connectRaw, Flag, FrameType, frame, headerFields, requestHeaders } from "./support/h2-frames.js";
import { type ServerProc, startCommand, startServerProcess, stop } from "./support/process.js";
import { eventually, settled, startServer } from "./support/server.js";
import { grpcRequestHeaders, requestEnvelope, streamPath } from "./support/wire.js";

describe("graceful shutdown", () => {
  let server: ServerProc | undefined;
  after(async () => {
    if (server) await stop(server, "SIGKILL");
  });

  it("should end open streams of every protocol with UNAVAILABLE and exit 0 on SIGTERM", async () => {
    server = await startServerProcess(["--shutdown-grace", "5s"]);
    const srv = server;
    const outcomes = clientCases.map(async (c) => {
      const counters: bigint[] = [];
      try {
        for await (const m of streamClient(c, srv.url).stream({ name: c.name, interval: durationFromMs(50) })) {
          counters.push(m.counter);
        }
        return { c, counters, error: undefined };
      } catch (e) {
        return { c, counters, error: ConnectError.from(e) };
      }
    });
    // Every client has its stream open once the server logged a start for each.
    await srv.waitUntil(() => srv.lines.filter((l) => l.includes('"stream started"')).length === clientCases.length);
    const signalled = performance.now();
    srv.child.kill("SIGTERM");
    const code = await srv.exited;
    const tookMs = performance.now() - signalled;
    assert.equal(code, 0);
    assert.ok(tookMs < 5000, `exited after ${tookMs} ms`);
    for (const { c, counters, error } of await Promise.all(outcomes)) {
      assert.ok(counters.length >= 1, `${c.name} received messages`);
      assert.equal(error?.code, Code.Unavailable, `${c.name}: ${error?.message}`);
      assert.equal(error?.rawMessage, "server is shutting down", c.name);
    }
    const ends = srv.lines.filter((l) => l.includes('"stream ended"')).map((l) => JSON.parse(l));
    assert.equal(ends.length, clientCases.length);
    for (const end of ends) assert.equal(end.reason, "shutdown");
    assert.ok(srv.lines.some((l) => l.includes('"shut down"') && l.includes('"clean":true')));
  });

  it("should leave an end line for every stream it stopped, however many, before it exits", async () => {
    // Thousands of streams ending at once queue their log lines behind one
    // another (a few turns of the event loop at most, in normal running); a
    // drain that closes its last socket sooner must not exit with them unsaid.
    const streams = 4000;
    server = await startServerProcess(["--shutdown-grace", "10s", "--max-streams-per-client", "10000"]);
    const srv = server;
    const sessions = Array.from({ length: streams / 100 }, () => http2.connect(srv.url));
    for (const s of sessions) s.on("error", () => {});
    const body = requestEnvelope({ name: "many", interval: durationFromMs(60_000) });
    const answered: Promise<void>[] = [];
    for (let i = 0; i < streams; i++) {
      const session = sessions[Math.floor(i / 100)] as http2.ClientHttp2Session;
      const req = session.request(grpcRequestHeaders());
      req.on("error", () => {});
      answered.push(new Promise((resolve) => req.once("data", () => resolve())));
      req.resume();
      req.end(body);
    }
    await Promise.all(answered);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    for (const s of sessions) s.destroy();
    const ends = srv.lines.filter((l) => l.includes('"stream ended"')).map((l) => JSON.parse(l));
    assert.equal(ends.length, streams, "one end line per stream");
    assert.ok(
      ends.every((e) => e.reason === "shutdown"),
      "each ended by the shutdown",
    );
    const lastEnd = srv.lines.findLastIndex((l) => l.includes('"stream ended"'));
    assert.ok(lastEnd < srv.lines.findIndex((l) => l.includes('"shut down"')), "every end line before the last word");
  });

  it("should exit at once with 1 on a second SIGTERM, without waiting out the first one's drain", async () => {
    // The delay keeps the first signal's drain going for 30 s: only the second can end it sooner.
    const srv = await startServerProcess(["--shutdown-delay", "30s"]);
    srv.child.kill("SIGTERM");
    await srv.waitUntil(() => srv.lines.some((l) => l.includes('"signal received"')));
    const signalled = performance.now();
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 1);
    assert.ok(performance.now() - signalled < 5000, "exited long before the delay was over");
    assert.ok(srv.lines.some((l) => l.includes('"second signal, exiting now"')));
  });

  it("should close idle HTTP/1.1 keep-alive connections at once rather than wait out the grace period", async () => {
    const srv = await startServer({ shutdownGraceMs: 5000 });
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve) =>
      http.get(`${srv.url}/no-such-page`, { agent }, (res) => {
        res.resume();
        res.on("end", resolve);
      }),
    );
    const started = performance.now();
    assert.equal(await srv.server.shutdown(), true, "closed without destroying anything");
    assert.ok(performance.now() - started < 1000, `took ${performance.now() - started} ms`);
    agent.destroy();
  });

  for (const fastPath of [true, false]) {
    it(`should cut a client that stops reading once the grace period is over (${fastPath ? "fast path" : "connect-node"})`, async () => {
      const srv = await startServer({ shutdownGraceMs: 300, fastPath });
      const session = http2.connect(srv.url, { settings: { initialWindowSize: 1024 } });
      session.on("error", () => {});
      const stream = session.request({ ":method": "POST", ":path": streamPath, "content-type": "application/grpc" });
      stream.on("error", () => {});
      stream.pause();
      stream.end(requestEnvelope({ name: "never reads", interval: { seconds: 0n, nanos: 0 } }));
      await eventually(() => srv.server.streams.messagesSent > 0, 2000, "the first message");
      await settled(() => srv.server.streams.messagesSent, 200, 10_000, "the generator to block on the window");
      const started = performance.now();
      assert.equal(await srv.server.shutdown(), false, "had to destroy what did not close");
      const took = performance.now() - started;
      assert.ok(took >= 250 && took < 3000, `shut down after ${took} ms`);
      assert.equal(srv.server.streams.liveCount, 0);
      const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === "never reads");
      assert.equal(ended?.reason, "shutdown");
      session.destroy();
    });
  }

  describe("final status before GOAWAY", () => {
    for (const fastPath of [true, false]) {
      const road = fastPath ? "lean path" : "connect-node";

      it(`should write gRPC's trailers and Connect's end-of-stream message, then PING, then GOAWAY once the peer answered (${road})`, async () => {
        const srv = await startServer({ fastPath, shutdownGraceMs: 5000 });
        const raw = await connectRaw(srv.port, { answerPings: true });
        const open = (id: number, contentType: string) => {
          const fields = headerFields(grpcRequestHeaders({ "content-type": contentType }));
          raw.socket.write(requestHeaders(id, fields, { endStream: false }));
          const body = requestEnvelope({ name: `s${id}`, interval: durationFromMs(20) });
          raw.socket.write(frame(FrameType.DATA, Flag.END_STREAM, id, body));
        };
        open(1, "application/grpc");
        open(3, "application/connect+proto");
        await eventually(() => srv.server.streams.liveCount === 2, 5000, "both streams");
        assert.equal(await srv.server.shutdown(), true);
        await raw.closed;
        const at = (match: (f: (typeof raw.frames)[0]) => boolean) => raw.frames.findIndex(match);
        const goaway = at((f) => f.type === FrameType.GOAWAY);
        const grpcTrailers = at(
          (f) => f.type === FrameType.HEADERS && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0,
        );
        const connectEnd = at(
          (f) => f.type === FrameType.DATA && f.streamId === 3 && (f.flags & Flag.END_STREAM) !== 0,
        );
        const last = Math.max(grpcTrailers, connectEnd);
        const ping = raw.frames.findIndex((f, i) => i > last && f.type === FrameType.PING);
        assert.ok(grpcTrailers >= 0 && connectEnd >= 0, "both streams ended with their own last frame");
        assert.ok(goaway > last, `GOAWAY at ${goaway}, trailers at ${grpcTrailers}, end-of-stream at ${connectEnd}`);
        assert.ok(ping > last && ping < goaway, "a PING between the last frames and GOAWAY");
        assert.equal(raw.goawayCode(), http2.constants.NGHTTP2_NO_ERROR);
        const connectBody = Buffer.concat(
          raw.frames.filter((f) => f.type === FrameType.DATA && f.streamId === 3).map((f) => f.payload),
        );
        assert.match(connectBody.toString("latin1"), /"code":"unavailable","message":"server is shutting down"/);
      });
    }

    it("should hand curl its grpc-status 14 trailers while 2,000 other streams drain with it", async () => {
      const dir = mkdtempSync(join(tmpdir(), "stream-curl-"));
      const body = join(dir, "request.bin");
      writeFileSync(body, requestEnvelope({ name: "curl", interval: durationFromMs(20) }));
      try {
        // Four times: the cut once showed in one run of four, behind a busy drain.
        for (let round = 0; round < 4; round++) {
          const srv = await startServerProcess(["--shutdown-grace", "5s"]);
          const others = await Promise.all(Array.from({ length: 20 }, () => openGrpcStreams(srv.port, 100)));
          const curl = startCommand("curl", [
            "-sS",
            "--http2-prior-knowledge",
            "--dump-header",
            "-",
            "--output",
            "/dev/null",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            `@${body}`,
            `${srv.url}${streamPath}`,
          ]);
          try {
            await srv.waitUntil(() => srv.lines.filter((l) => l.includes('"stream started"')).length >= 2001, 30_000);
            srv.child.kill("SIGTERM");
            assert.equal(await srv.exited, 0);
            assert.equal(await curl.exited, 0, curl.stderr());
            assert.ok(
              curl.lines.includes("grpc-status: 14"),
              `round ${round}, curl printed:\n${curl.lines.join("\n")}`,
            );
          } finally {
            for (const o of others) o.socket.destroy();
            await stop(srv, "SIGKILL");
            await stop(curl, "SIGKILL");
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    for (const fastPath of [true, false]) {
      const road = fastPath ? "lean path" : "connect-node";
      it(`should hand curl --http2-prior-knowledge the grpc-status 14 trailers on SIGTERM (${road})`, async () => {
        const dir = mkdtempSync(join(tmpdir(), "stream-curl-"));
        const body = join(dir, "request.bin");
        writeFileSync(body, requestEnvelope({ name: "curl", interval: durationFromMs(20) }));
        try {
          // Three times: curl lost the trailers only when the GOAWAY came in the same read as them.
          for (let round = 0; round < 3; round++) {
            const srv = await startServerProcess(["--fast-path", fastPath ? "on" : "off", "--shutdown-grace", "5s"]);
            const curl = startCommand("curl", [
              "-sS",
              "--http2-prior-knowledge",
              "--dump-header",
              "-",
              "--output",
              "/dev/null",
              "-H",
              "content-type: application/grpc",
              "-H",
              "te: trailers",
              "--data-binary",
              `@${body}`,
              `${srv.url}${streamPath}`,
            ]);
            try {
              await srv.waitForLine((l) => l.includes('"stream started"'));
              srv.child.kill("SIGTERM");
              assert.equal(await srv.exited, 0);
              assert.equal(await curl.exited, 0, curl.stderr());
              assert.ok(
                curl.lines.includes("grpc-status: 14"),
                `round ${round}, curl printed:\n${curl.lines.join("\n")}`,
              );
              assert.ok(curl.lines.includes("grpc-message: server%20is%20shutting%20down"));
            } finally {
              await stop(srv, "SIGKILL");
              await stop(curl, "SIGKILL");
            }
          }
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  });
});

/** `count` gRPC streams at a 100 ms interval on one raw connection that reads everything. */
async function openGrpcStreams(port: number, count: number) {
  const c = await connectRaw(port, { answerPings: true });
  const frames: Buffer[] = [];
  const message = requestEnvelope({ name: "drained", interval: durationFromMs(100) });
  for (let i = 0; i < count; i++) {
    const id = 1 + 2 * i;
    frames.push(
      requestHeaders(id, headerFields(grpcRequestHeaders()), { endStream: false }),
      frame(FrameType.DATA, Flag.END_STREAM, id, message),
    );
  }
  c.socket.write(Buffer.concat(frames));
  return c;
}
