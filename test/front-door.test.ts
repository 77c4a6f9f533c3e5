import assert from "node:assert/strict";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { grpcStatusOf } from "./support/h2-grpc.js";
import { startServer, type TestServer } from "./support/server.js";
import { envelope, grpcRequestHeaders, requestEnvelope, streamPath } from "./support/wire.js";

// The front door, seen from outside: every answer carries its request id,
// a refusal's log line says what the client asked for, and what a client
// gets wrong at the door (a % that starts no escape, a body that never
// comes, a preface that is not one, an upload nobody reads) gets a clear
// answer or an end, never a hang.

/** Raw bytes on a fresh connection; resolves with everything the server sent before it closed or `ms` passed. */
function raw(
  port: number,
  bytes: string | Buffer,
  ms: number,
): Promise<{ data: Buffer; closed: boolean; tookMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    const s = net.connect(port, "127.0.0.1", () => s.write(bytes));
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed, tookMs: performance.now() - started });
    };
    const timer = setTimeout(() => done(false), ms);
    s.once("close", () => done(true));
  });
}

describe("the front door", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ headersTimeoutMs: 1000 });
  });
  after(() => srv.close());

  it("should put x-request-id on every answer: the page, the probes, a 404, a refusal", async () => {
    for (const path of ["/healthz", "/nope", "/stream?limit=x", "/stream?limit=1&interval=0s"]) {
      const res = await fetch(`${srv.url}${path}`, { headers: { "x-request-id": "door-1" } });
      await res.arrayBuffer();
      assert.equal(res.headers.get("x-request-id"), "door-1", path);
    }
  });

  it("should take GET /stream's interval as every flag and client writes a duration: 100ms, 1.5s, 1m30s", async () => {
    for (const interval of ["100ms", "0.1s", "1m30s"]) {
      const res = await fetch(`${srv.url}/stream?limit=1&interval=${interval}`);
      assert.equal(res.status, 200, interval);
      await res.text();
    }
  });

  it("should answer a % that starts no escape with 400, not take it as the name", async () => {
    const res = await fetch(`${srv.url}/stream?name=%ZZ`);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), {
      code: "invalid_argument",
      message: "the query string has a % that starts no escape (write %25 for a %)",
    });
  });

  it("should log what a refused client asked for, as sent", async () => {
    const res = await fetch(`${srv.url}/stream?name=Bad&interval=fast&limit=3`, {
      headers: { "x-request-id": "asked-1" },
    });
    assert.equal(res.status, 400);
    await res.text();
    const line = srv.logs.find((l) => l.msg === "stream rejected" && l.id === "asked-1");
    assert.equal(line?.name, "Bad");
    assert.equal(line?.interval, "fast");
    assert.equal(line?.limit, "3");
  });

  it("should tell a Connect streaming POST of bare JSON that a streaming body is envelopes", async () => {
    const res = await fetch(`${srv.url}${streamPath}`, {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: JSON.stringify({ name: "Bare" }),
    });
    assert.equal(res.status, 200);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body[0], 2, "the end-of-stream envelope");
    const end = JSON.parse(body.subarray(5).toString()) as { error: { code: string; message: string } };
    assert.equal(end.error.code, "invalid_argument");
    assert.match(end.error.message, /series of envelopes.*starts with 0x7b.*docs\/clients\.md/);
  });

  it("should answer 415 with a JSON body naming the content types the method takes", async () => {
    for (const contentType of ["application/json", undefined]) {
      const res = await fetch(`${srv.url}${streamPath}`, {
        method: "POST",
        headers: contentType === undefined ? {} : { "content-type": contentType },
        body: contentType === undefined ? null : "{}",
      });
      assert.equal(res.status, 415, String(contentType));
      const body = (await res.json()) as { code: string; message: string };
      assert.equal(body.code, "invalid_argument");
      assert.match(
        body.message,
        /^this method takes application\/connect\+proto, application\/connect\+json, .*application\/grpc-web-text, not /,
      );
      assert.match(String(res.headers.get("accept-post")), /application\/grpc/);
    }
  });

  it("should answer 408 in JSON to a body that does not come in time, as to a head", async () => {
    const head = `POST ${streamPath} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/connect+proto\r\nContent-Length: 1000000000\r\n\r\n`;
    const { data, closed, tookMs } = await raw(srv.port, head, 5000);
    const text = data.toString("latin1");
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /"code":"deadline_exceeded"/);
    assert.ok(closed, "the connection was closed");
    assert.ok(tookMs >= 900 && tookMs < 3000, `answered after ${tookMs.toFixed(0)} ms`);
  });

  it("should answer 408 over HTTP/2 too, to a body that does not come in time, and only to it", async () => {
    const session = http2.connect(srv.url);
    session.on("error", () => {});
    try {
      const started = performance.now();
      const late = session.request(grpcRequestHeaders());
      late.on("error", () => {});
      // Beside it, a call whose body came with its head is served in full, long past the body timeout.
      const onTime = session.request(grpcRequestHeaders());
      onTime.end(requestEnvelope({ name: "on time", interval: { nanos: 700_000_000 }, limit: 3n }));
      const [status] = (await Promise.race([
        new Promise((resolve) => late.once("response", (h) => resolve([h[":status"]]))),
        new Promise((resolve) => setTimeout(() => resolve(["none"]), 5000)),
      ])) as [unknown];
      assert.equal(status, 408);
      const tookMs = performance.now() - started;
      assert.ok(tookMs >= 900 && tookMs < 3000, `answered after ${tookMs.toFixed(0)} ms`);
      const chunks: Buffer[] = [];
      onTime.on("data", (c: Buffer) => chunks.push(c));
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => onTime.once("trailers", resolve));
      assert.equal(trailers["grpc-status"], "0");
      assert.equal(Buffer.concat(chunks).toString("latin1").split("time stream message.").length - 1, 3);
    } finally {
      session.destroy();
    }
  });

  it("should answer bytes that begin like the HTTP/2 preface but differ with GOAWAY PROTOCOL_ERROR", async () => {
    const { data, closed } = await raw(srv.port, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 2000);
    assert.deepEqual([...data], [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.ok(closed);
  });

  it("should end an HTTP/2 upload it refused: the answer, its trailers, then RST_STREAM NO_ERROR", async () => {
    const session = http2.connect(srv.url);
    session.on("error", () => {});
    const req = session.request(grpcRequestHeaders());
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("error", () => {});
    req.resume();
    // A 64 MiB message: refused at its length prefix. The client writes as flow control lets it.
    const chunk = Buffer.alloc(64 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent < 64 * 1024 * 1024 && !req.destroyed && !req.closed) {
        sent += chunk.length;
        const first = sent === chunk.length ? envelope(chunk, 0, 64 * 1024 * 1024) : chunk;
        if (!req.write(first)) return void req.once("drain", pump);
      }
    };
    pump();
    await new Promise((resolve) => req.once("close", resolve));
    session.close();
    assert.equal(grpcStatusOf({ trailers, headers: {} } as never).code, 8);
    assert.equal(req.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    assert.ok(sent < 4 * 1024 * 1024, `the client sent ${sent} bytes before the server stopped it`);
  });
});
