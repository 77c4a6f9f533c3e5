import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import * as tls from "node:tls";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { type ResumeStatus, resumeStream } from "../packages/client/src/index.js";
import { connectionLimit, openFilesLimit } from "../src/server/open-files.js";
import { durationFromMs } from "../src/shared/duration.js";
import { makeCertificates, type TestCertificates } from "./support/certs.js";
import { clientCases, streamClient } from "./support/clients.js";
import { collect, grpcJsClient, grpcJsStream } from "./support/grpc-js.js";
import { connectRaw, Flag, FrameType, frame, headerFields, type RawH2, requestHeaders } from "./support/h2-frames.js";
import { sample, scrapeMetrics } from "./support/metrics-text.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { grpcRequestHeaders, requestEnvelope, streamPath } from "./support/wire.js";

// The limits of issue 12, each on the roads it bounds: connections
// (--max-connections), a stream's lifetime (--max-stream-duration), the
// request head (--max-header-bytes), HTTP/2 streams per connection
// (--max-concurrent-streams), and Retry-After past --max-streams.

/** Connects, writes `bytes`, and resolves with what came back once the server closed (or reset) the connection. */
function exchange(
  connect: () => net.Socket,
  bytes?: string,
): Promise<{ reply: string; connected: boolean; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect();
    let reply = "";
    let connected = false;
    socket.once(socket instanceof tls.TLSSocket ? "secureConnect" : "connect", () => {
      connected = true;
      if (bytes !== undefined) socket.write(bytes);
    });
    socket.on("data", (c: Buffer) => {
      reply += c.toString("latin1");
    });
    socket.on("error", () => {});
    socket.once("close", () => resolve({ reply, connected, closedAfterMs: performance.now() - started }));
  });
}

/** A connection that stays open until the test ends it: resolves once it is established. */
function hold(connect: () => net.Socket): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect();
    socket.once(socket instanceof tls.TLSSocket ? "secureConnect" : "connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** The whole body of a GET, as text. */
function getText(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

describe("connectionLimit()", () => {
  it("should keep --max-connections below the open files limit, with room for what is not a connection", () => {
    assert.equal(connectionLimit(50_000, 1_048_576), 50_000);
    assert.equal(connectionLimit(50_000, 20_000), 19_872);
    assert.equal(connectionLimit(200, 1024), 200);
    assert.equal(connectionLimit(50_000, 100), 1);
    assert.equal(connectionLimit(50_000, undefined), 50_000);
  });

  it("should read the soft limit from /proc/self/limits, and nothing from a file that is not there", () => {
    const limit = openFilesLimit();
    assert.ok(limit === undefined || (Number.isSafeInteger(limit) && limit > 0), String(limit));
    assert.equal(openFilesLimit("/nonexistent/limits"), undefined);
  });
});

describe("--max-connections", () => {
  let srv: TestServer;
  const held: net.Socket[] = [];
  afterEach(async () => {
    for (const s of held.splice(0)) s.destroy();
    await srv?.close();
  });

  it("should hold the limit over HTTP/1.1 and HTTP/2 together, close the next connection at once, and accept again once one closes", async () => {
    srv = await startServer({ maxConnections: 3, headersTimeoutMs: 30_000 });
    assert.equal(srv.listener.maxConnections, 3);
    const connect = () => net.connect(srv.port, "127.0.0.1");
    // An HTTP/2 connection with a stream open, an NDJSON stream, and a connection that has sent nothing yet.
    const session = http2.connect(srv.url);
    session.on("error", () => {});
    const h2stream = session.request({ ":method": "POST", ":path": streamPath, "content-type": "application/grpc" });
    h2stream.on("error", () => {});
    h2stream.end(requestEnvelope({ name: "held h2", interval: durationFromMs(3_600_000) }));
    const ndjson = http.get(`${srv.url}/stream?name=held&interval=3600s`, { agent: false });
    ndjson.on("error", () => {});
    held.push(await hold(connect));
    await eventually(() => srv.server.streams.liveCount === 2, 5000, "both streams to open");
    assert.equal(srv.listener.sockets.size, 3);

    const refused = await exchange(connect, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(refused.reply, "", "the connection past the limit is closed without an answer");
    assert.ok(refused.closedAfterMs < 2000, `closed after ${refused.closedAfterMs} ms`);
    const refusedH2 = await exchange(connect, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert.equal(refusedH2.reply, "");
    await eventually(
      () => srv.logs.some((l) => l.msg === "connections refused: --max-connections reached" && l.refused === 1),
      2000,
      "the warning",
    );
    assert.equal(srv.server.streams.liveCount, 2, "the held streams go on");

    held.pop()?.destroy();
    await eventually(() => srv.listener.sockets.size === 2, 5000, "the server to see the connection go");
    const ok = await getText(`${srv.url}/stream?name=after&limit=2&interval=0s`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.trim().split("\n").length, 2);

    ndjson.destroy();
    session.destroy();
  });

  it("should lower the limit to what the open files limit allows", async () => {
    srv = await startServer({ maxConnections: 10_000_000 });
    assert.ok(srv.listener.maxConnections < 10_000_000);
    const line = srv.logs.find((l) => l.msg === "max connections lowered to fit the open files limit");
    assert.equal(line?.max_connections, srv.listener.maxConnections);
    assert.equal(line?.configured, 10_000_000);
    assert.equal(srv.listener.maxConnections, Number(line?.open_files_limit) - 128);
  });

  describe("with TLS", () => {
    let certs: TestCertificates;
    before(() => {
      certs = makeCertificates();
    });
    after(() => certs.remove());

    it("should answer 431 to an HTTP/1.1 head past --max-header-bytes over TLS too", async () => {
      srv = await startServer({ maxHeaderBytes: 2048, tlsCert: certs.serverCert, tlsKey: certs.serverKey });
      const connect = () =>
        tls.connect({
          port: srv.port,
          host: "127.0.0.1",
          ca: certs.read(certs.serverCert),
          ALPNProtocols: ["http/1.1"],
        });
      const past = await exchange(connect, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2100)}\r\n\r\n`);
      assert.match(past.reply, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      assert.match(past.reply, /"code":"resource_exhausted"/);
      const within = await exchange(connect, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      assert.match(within.reply, /^HTTP\/1\.1 200 /);
    });

    it("should count TLS connections and refuse the next one before its handshake", async () => {
      srv = await startServer({ maxConnections: 2, tlsCert: certs.serverCert, tlsKey: certs.serverKey });
      const ca = certs.read(certs.serverCert);
      const connect = () => tls.connect({ port: srv.port, host: "127.0.0.1", ca, ALPNProtocols: ["http/1.1"] });
      held.push(await hold(connect), await hold(connect));
      const refused = await exchange(connect);
      assert.equal(refused.connected, false, "no handshake past the limit");
      held.pop()?.destroy();
      await eventually(() => srv.listener.sockets.size === 1, 5000, "the server to see the connection go");
      const client = createClient(
        StreamService,
        createConnectTransport({ baseUrl: `https://127.0.0.1:${srv.port}`, httpVersion: "2", nodeOptions: { ca } }),
      );
      const got: bigint[] = [];
      for await (const m of client.stream({ limit: 2n, interval: durationFromMs(0) })) got.push(m.counter);
      assert.deepEqual(got, [0n, 1n]);
    });
  });
});

describe("--max-stream-duration", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ maxStreamDurationMs: 300 });
  });
  after(() => srv.close());

  for (const c of clientCases) {
    it(`should cut a stream after 300 ms with UNAVAILABLE, which the resuming client carries on from with no gap (${c.name})`, async () => {
      const name = `cut ${c.name}`;
      const client = streamClient(c, srv.url);
      const seen: bigint[] = [];
      const reconnects: ResumeStatus[] = [];
      const states: string[] = [];
      const request = { name, interval: durationFromMs(50), limit: 16n, startAt: 4n };
      for await (const m of resumeStream(client, request, {
        onStatus: (s) => {
          states.push(s.state);
          if (s.state === "reconnecting") reconnects.push(s);
        },
        initialBackoffMs: 10,
        maxAttempts: 5,
      })) {
        seen.push(m.counter);
      }
      assert.equal(states.at(-1), "done");
      assert.deepEqual(
        seen,
        Array.from({ length: 16 }, (_, i) => BigInt(4 + i)),
      );
      assert.ok(reconnects.length >= 1, "the stream was cut at least once");
      for (const r of reconnects) {
        assert.equal(r.error?.code, Code.Unavailable);
        assert.match(
          r.error?.rawMessage ?? "",
          /^stream reached the server's maximum duration of 300ms \(resume with start_at \d+\)$/,
        );
      }
      const ends = srv.logs.filter((l) => l.msg === "stream ended" && l.name === name);
      assert.equal(ends.length, reconnects.length + 1);
      assert.deepEqual(
        ends.map((e) => e.reason),
        [...reconnects.map(() => "max_duration"), "limit"],
      );
      for (const end of ends.slice(0, -1)) {
        assert.ok(Number(end.duration_ms) >= 290 && Number(end.duration_ms) < 1500, `lasted ${end.duration_ms} ms`);
      }
    });
  }

  it("should end Server-Sent Events with an error event, and go on from Last-Event-ID as EventSource does", async () => {
    const counters: number[] = [];
    let lastEventId: string | undefined;
    let cuts = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const headers: http.OutgoingHttpHeaders = { accept: "text/event-stream" };
      if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
      const { status, body } = await getText(`${srv.url}/stream?name=sse-cut&interval=0.05s&limit=14`, headers);
      if (status === 204) break;
      assert.equal(status, 200);
      for (const event of body.split("\n\n").filter((e) => e.trim() !== "")) {
        const id = /^id: (\d+)$/m.exec(event)?.[1];
        if (id !== undefined) {
          counters.push(Number(id));
          lastEventId = id;
          continue;
        }
        assert.match(event, /^event: error\ndata: /);
        const data = JSON.parse(event.slice(event.indexOf("data: ") + 6));
        assert.equal(data.code, "unavailable");
        assert.equal(
          data.message,
          `stream reached the server's maximum duration of 300ms (resume with start_at ${Number(lastEventId) + 1})`,
        );
        cuts++;
      }
    }
    assert.deepEqual(
      counters,
      Array.from({ length: 14 }, (_, i) => i),
    );
    assert.ok(cuts >= 1, "cut at least once");
  });

  it("should end NDJSON with an error line that says where to resume", async () => {
    const { status, body } = await getText(`${srv.url}/stream?name=ndjson-cut&interval=0.05s`);
    assert.equal(status, 200);
    const lines = body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const last = lines.pop();
    assert.ok(lines.length >= 3, `${lines.length} messages in 300 ms`);
    assert.deepEqual(last, {
      error: {
        code: "unavailable",
        message: `stream reached the server's maximum duration of 300ms (resume with start_at ${lines.length})`,
      },
    });
  });

  it("should count the cuts as max_duration, not as shutdown", async () => {
    const metrics = await scrapeMetrics(srv.url);
    assert.ok(sample(metrics, 'streams_ended_total{reason="max_duration"}') >= clientCases.length + 2);
    assert.equal(srv.logs.filter((l) => l.msg === "stream ended" && l.reason === "shutdown").length, 0);
  });
});

describe("--max-header-bytes", () => {
  let srv: TestServer;
  after(() => srv?.close());

  it("should answer 431 with a JSON error to an HTTP/1.1 head past the limit, and serve one within it", async () => {
    srv = await startServer({ maxHeaderBytes: 2048 });
    const request = (size: number) =>
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(size)}\r\nConnection: close\r\n\r\n`;
    const connect = () => net.connect(srv.port, "127.0.0.1");
    const past = await exchange(connect, request(2100));
    assert.match(past.reply, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.deepEqual(JSON.parse(past.reply.slice(past.reply.indexOf("\r\n\r\n") + 4)), {
      code: "resource_exhausted",
      message: "the request line and headers are too large",
    });
    const within = await exchange(connect, request(1800));
    assert.match(within.reply, /^HTTP\/1\.1 200 /);
  });

  for (const fastPath of [true, false]) {
    it(`should reset an HTTP/2 stream whose header list is past the limit, before or after SETTINGS are acknowledged (${fastPath ? "lean path" : "connect-node"})`, async () => {
      await srv?.close();
      srv = await startServer({ maxHeaderBytes: 2048, fastPath });
      // grpc-js sends its first request before it has read the server's SETTINGS.
      const client = grpcJsClient(srv.port);
      try {
        const big = new grpc.Metadata();
        big.set("x-big", "a".repeat(3000));
        const { messages, error } = await collect(grpcJsStream(client, { limit: 1n }, {}, big));
        assert.equal(messages.length, 0);
        assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED, error?.message);
        const small = new grpc.Metadata();
        small.set("x-small", "a".repeat(1000));
        const ok = await collect(grpcJsStream(client, { limit: 1n }, {}, small));
        assert.equal(ok.error, undefined);
        assert.equal(ok.messages.length, 1);
        // A connection that has acknowledged our SETTINGS: nghttp2 refuses it itself, the same way.
        const session = http2.connect(srv.url);
        session.on("error", () => {});
        await new Promise((resolve) => session.once("remoteSettings", resolve));
        assert.equal(session.remoteSettings.maxHeaderListSize, 2048);
        const stream = session.request({
          ":method": "POST",
          ":path": streamPath,
          "content-type": "application/grpc",
          "x-big": "a".repeat(3000),
        });
        stream.on("error", () => {});
        stream.end(requestEnvelope({ limit: 1n }));
        await new Promise((resolve) => stream.once("close", resolve));
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        session.close();
        assert.equal(srv.server.streams.messagesSent, 1, "no stream was opened for the refused calls");
      } finally {
        client.close();
      }
    });
  }
});

describe("--max-concurrent-streams", () => {
  /** Opens gRPC streams 1, 3 and 5 at once, as a peer that ignores SETTINGS_MAX_CONCURRENT_STREAMS (no HTTP/2 library would). */
  function openThree(raw: RawH2): void {
    for (const id of [1, 3, 5]) {
      raw.socket.write(requestHeaders(id, headerFields(grpcRequestHeaders()), { endStream: false }));
      const body = requestEnvelope({ name: `s${id}`, interval: durationFromMs(50) });
      raw.socket.write(frame(FrameType.DATA, Flag.END_STREAM, id, body));
    }
  }
  const dataOn = (raw: RawH2, id: number) =>
    raw.frames.filter((f) => f.type === FrameType.DATA && f.streamId === id).length;

  for (const fastPath of [true, false]) {
    const road = fastPath ? "lean path" : "connect-node";

    it(`should refuse the stream past the limit alone while the peer has not acknowledged it yet (${road})`, async () => {
      const srv = await startServer({ maxConcurrentStreams: 2, fastPath });
      const raw = await connectRaw(srv.port, { answerPings: true });
      try {
        openThree(raw);
        await eventually(() => raw.frames.some((f) => f.type === FrameType.RST_STREAM), 5000, "a reset");
        const reset = raw.frames.find((f) => f.type === FrameType.RST_STREAM);
        assert.equal(reset?.streamId, 5);
        assert.equal(reset?.payload.readUInt32BE(0), http2.constants.NGHTTP2_REFUSED_STREAM);
        await eventually(() => dataOn(raw, 1) >= 3 && dataOn(raw, 3) >= 3, 5000, "the first two streams to go on");
        assert.equal(dataOn(raw, 5), 0);
        assert.equal(srv.logs.filter((l) => l.msg === "stream started").length, 2);
      } finally {
        raw.socket.destroy();
        await srv.close();
      }
    });

    it(`should cut a peer that goes past the limit it acknowledged, and free its streams (${road})`, async () => {
      const srv = await startServer({ maxConcurrentStreams: 2, fastPath });
      const raw = await connectRaw(srv.port, { answerPings: true });
      try {
        raw.socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        openThree(raw);
        await raw.closed;
        assert.notEqual(raw.goawayCode(), undefined, "GOAWAY before the close");
        assert.notEqual(raw.goawayCode(), http2.constants.NGHTTP2_NO_ERROR);
        assert.equal(dataOn(raw, 5), 0);
        await eventually(() => srv.server.streams.liveCount === 0, 5000, "the peer's streams to end");
        await eventually(() => srv.listener.sockets.size === 0, 5000, "the server to close the connection");
      } finally {
        raw.socket.destroy();
        await srv.close();
      }
    });
  }
});

describe("past --max-streams", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ maxStreams: 1 });
  });
  after(() => srv.close());

  it("should answer GET /stream with 429 and a Retry-After of 5 to 15 seconds", async () => {
    const held = http.get(`${srv.url}/stream?interval=3600s`, { agent: false });
    held.on("error", () => {});
    await eventually(() => srv.server.streams.liveCount === 1, 5000, "the first stream");
    const seconds = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${srv.url}/stream?limit=1`);
      assert.equal(res.status, 429);
      assert.deepEqual(await res.json(), {
        code: "resource_exhausted",
        message: "too many open streams (try again later)",
      });
      const retryAfter = res.headers.get("retry-after") ?? "";
      assert.match(retryAfter, /^\d+$/);
      seconds.add(Number(retryAfter));
    }
    for (const s of seconds) assert.ok(s >= 5 && s <= 15, `Retry-After: ${s}`);
    assert.ok(seconds.size > 1, "spread, not one value for everyone");
    held.destroy();
  });
});
