import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { clientCases, streamClient } from "./support/clients.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { envelope, streamPath } from "./support/wire.js";

/** Writes `bytes` on a fresh connection and resolves with all the server sends until it closes. */
function rawExchange(port: number, bytes: string | undefined): Promise<{ reply: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(port, "127.0.0.1", () => {
      if (bytes !== undefined) socket.write(bytes);
    });
    let reply = "";
    socket.on("data", (c) => {
      reply += c.toString("latin1");
    });
    socket.on("error", reject);
    socket.on("close", () => resolve({ reply, closedAfterMs: performance.now() - started }));
  });
}

/** The JSON body of a raw HTTP/1.1 reply. */
function jsonBody(reply: string): unknown {
  return JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
}

describe("one port", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ headersTimeoutMs: 300, maxStreams: 3 });
  });
  after(() => srv.close());

  it("should serve an HTTP/1.0 request shorter than the HTTP/2 preface", async () => {
    const { reply } = await rawExchange(srv.port, "GET /x HTTP/1.0\r\n\r\n");
    assert.match(reply, /^HTTP\/1\.1 404 /);
  });

  it("should stream to an HTTP/1.0 client that sends no Host, over GET /stream and Connect, and refuse an HTTP/1.1 one with 400", async () => {
    const { reply } = await rawExchange(srv.port, "GET /stream?name=old&limit=1&interval=0s HTTP/1.0\r\n\r\n");
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.match(reply, /Hello old, this is 0 time stream message\./);
    const body = envelope(Buffer.from(JSON.stringify({ name: "old rpc", limit: "1" })));
    const { reply: rpc } = await rawExchange(
      srv.port,
      "POST /stream.v1.StreamService/Stream HTTP/1.0\r\ncontent-type: application/connect+json\r\n" +
        `content-length: ${body.length}\r\n\r\n${body.toString("latin1")}`,
    );
    assert.match(rpc, /^HTTP\/1\.1 200 /);
    assert.match(rpc, /Hello old rpc, this is 0 time stream message\./);
    const { reply: noHost } = await rawExchange(srv.port, "GET /healthz HTTP/1.1\r\n\r\n");
    assert.match(noHost, /^HTTP\/1\.1 400 /);
    assert.deepEqual(jsonBody(noHost), { code: "invalid_argument", message: "the request has no Host header" });
  });

  it("should close a connection that sends nothing once the headers timeout passes", async () => {
    const { reply, closedAfterMs } = await rawExchange(srv.port, undefined);
    assert.equal(reply, "");
    assert.ok(closedAfterMs >= 250 && closedAfterMs < 5000, `closed after ${closedAfterMs} ms`);
  });

  it("should answer 408 with a JSON error and close an HTTP/1.1 connection whose request head never completes", async () => {
    const { reply, closedAfterMs } = await rawExchange(srv.port, "GET /stream HTTP/1.1\r\nHost: x\r\n");
    assert.match(reply, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(reply, /\r\ncontent-type: application\/json\r\n/i);
    assert.deepEqual(jsonBody(reply), { code: "deadline_exceeded", message: "the request did not arrive in time" });
    assert.ok(closedAfterMs >= 250 && closedAfterMs < 5000, `closed after ${closedAfterMs} ms`);
  });

  it("should answer 431 with a JSON error to a 1 MB query string, and keep serving", async () => {
    const { reply } = await rawExchange(
      srv.port,
      `GET /stream?name=${"a".repeat(1 << 20)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.match(reply, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.deepEqual(jsonBody(reply), {
      code: "resource_exhausted",
      message: "the request line and headers are too large",
    });
    const { reply: ok } = await rawExchange(srv.port, "GET /healthz HTTP/1.0\r\n\r\n");
    assert.match(ok, /^HTTP\/1\.1 200 /);
  });

  it("should answer 400 to bytes that are not HTTP, and keep serving", async () => {
    const { reply } = await rawExchange(srv.port, "\x16\x03\x01garbage that is not http\r\n\r\n");
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.deepEqual(jsonBody(reply), { code: "invalid_argument", message: "malformed HTTP request" });
    const { reply: h2garbage } = await rawExchange(
      srv.port,
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    );
    assert.doesNotMatch(h2garbage, /HTTP\/1/);
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    for await (const m of client.stream({ name: "after garbage", limit: 1n })) assert.equal(m.counter, 0n);
  });

  it("should echo a sane x-request-id and log it, and replace an insane one", async () => {
    const res = await fetch(`${srv.url}${streamPath}`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "x-request-id": "req-42" },
      body: new Uint8Array(envelope(Buffer.from('{"limit":1} '))),
    });
    assert.equal(res.headers.get("x-request-id"), "req-42");
    await res.arrayBuffer();
    assert.ok(srv.logs.some((l) => l.msg === "stream started" && l.id === "req-42"));
    const odd = await fetch(`${srv.url}${streamPath}`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "x-request-id": "a b\u00e9" },
      body: new Uint8Array(envelope(Buffer.from('{"limit":1} '))),
    });
    assert.match(odd.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    await odd.arrayBuffer();
  });

  it("should refuse streams past --max-streams with RESOURCE_EXHAUSTED, then accept again", async () => {
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    const abort = new AbortController();
    const open = [0, 1, 2].map(async () => {
      const it = client
        .stream({ interval: durationFromMs(3_600_000) }, { signal: abort.signal })
        [Symbol.asyncIterator]();
      await it.next();
      return it;
    });
    const iterators = await Promise.all(open);
    await assert.rejects(
      async () => {
        for await (const _ of client.stream({ limit: 1n })) {
        }
      },
      (e) =>
        ConnectError.from(e).code === Code.ResourceExhausted &&
        /too many open streams/.test(ConnectError.from(e).rawMessage),
    );
    abort.abort();
    await Promise.allSettled(iterators.map((it) => it.next()));
    await eventually(() => srv.server.streams.liveCount === 0, 1000, "the aborted streams to end");
    for await (const m of client.stream({ limit: 1n })) assert.equal(m.counter, 0n);
  });
});

describe("one port with TLS", () => {
  let dir: string;
  let srv: TestServer;
  let ca: Buffer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "stream-tls-"));
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    ca = readFileSync(join(dir, "cert.pem"));
    srv = await startServer({ tlsCert: join(dir, "cert.pem"), tlsKey: join(dir, "key.pem") });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, transport] of [
    [
      "gRPC over h2 (ALPN)",
      () => createGrpcTransport({ baseUrl: `https://127.0.0.1:${srv.port}`, nodeOptions: { ca } }),
    ],
    [
      "Connect over HTTP/1.1 (ALPN)",
      () =>
        createConnectTransport({ baseUrl: `https://127.0.0.1:${srv.port}`, httpVersion: "1.1", nodeOptions: { ca } }),
    ],
    [
      "Connect over h2 (ALPN)",
      () => createConnectTransport({ baseUrl: `https://127.0.0.1:${srv.port}`, httpVersion: "2", nodeOptions: { ca } }),
    ],
  ] as const) {
    it(`should stream ${name}`, async () => {
      const client = createClient(StreamService, transport());
      const got: string[] = [];
      for await (const m of client.stream({ name: "TLS", limit: 2n, interval: durationFromMs(0) })) got.push(m.message);
      assert.deepEqual(got, ["Hello TLS, this is 0 time stream message.", "Hello TLS, this is 1 time stream message."]);
    });
  }
});
