import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as readline from "node:readline";
import { after, afterEach, before, describe, it } from "node:test";
import { sample, scrapeMetrics } from "./support/metrics-text.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// GET /stream over real sockets, as curl and EventSource see it.

const timestamp = '"timestamp":"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z"';
/** The exact canonical proto JSON line of one greeting (the counter is omitted when 0, as proto3 JSON does). */
function line(name: string, counter: number): RegExp {
  const c = counter === 0 ? "" : `"counter":"${counter}",`;
  return new RegExp(`^\\{"message":"Hello ${name}, this is ${counter} time stream message\\.",${c}${timestamp}\\}$`);
}

interface Opened {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body's lines, as they arrive. */
  lines: AsyncIterator<string>;
  /** The rest of the body as lines, once it ends. */
  rest(): Promise<string[]>;
  /** Drops the connection, as a client that goes away does. */
  destroy(): void;
}

function get(url: string, headers: http.OutgoingHttpHeaders = {}, method = "GET"): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const lines = readline
        .createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY })
        [Symbol.asyncIterator]();
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        lines,
        async rest() {
          const out: string[] = [];
          for (let r = await lines.next(); !r.done; r = await lines.next()) out.push(r.value);
          return out;
        },
        destroy: () => req.destroy(),
      });
    });
    req.on("error", reject);
    req.end();
  });
}

async function next(opened: Opened): Promise<string> {
  const r = await opened.lines.next();
  assert.ok(!r.done, "the body ended early");
  return r.value;
}

describe("GET /stream", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ heartbeatMs: 50 });
  });
  after(() => srv.close());
  afterEach(async () => {
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "every stream to end");
    await eventually(() => srv.server.streams.pacer.pending === 0, 5000, "no pending waits");
  });

  describe("as NDJSON (the default)", () => {
    it("should send one canonical JSON StreamResponse a line, then end", async () => {
      const r = await get(`${srv.url}/stream?name=Bob&limit=3&start_at=7&interval=0s`, { "x-request-id": "req-42" });
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-type"], "application/x-ndjson");
      assert.equal(r.headers["x-request-id"], "req-42");
      const lines = await r.rest();
      assert.equal(lines.length, 3, lines.join("\n"));
      for (const [i, l] of lines.entries()) assert.match(l, line("Bob", 7 + i));
    });

    it("should use the RPC's defaults: Anonymous, from 0", async () => {
      const lines = await (await get(`${srv.url}/stream?limit=1`)).rest();
      assert.equal(lines.length, 1);
      assert.match(lines[0] ?? "", line("Anonymous", 0));
    });

    it("should log the stream as protocol ndjson over HTTP/1.1, with the request id", async () => {
      await (await get(`${srv.url}/stream?name=Logged&limit=2&interval=0s`, { "x-request-id": "log-1" })).rest();
      const started = srv.logs.find((l) => l.msg === "stream started" && l.name === "Logged");
      const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === "Logged");
      assert.ok(started && ended);
      assert.equal(started.protocol, "ndjson");
      assert.equal(started.http, "1.1");
      assert.equal(started.id, "log-1");
      assert.equal(ended.reason, "limit");
      assert.equal(ended.sent, 2);
    });

    it("should send the first message at once and end the stream when the client disconnects", async () => {
      const r = await get(`${srv.url}/stream?name=Gone&interval=3600s`);
      assert.match(await next(r), line("Gone", 0));
      assert.equal(srv.server.streams.liveCount, 1);
      r.destroy();
      await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end");
      const ended = srv.logs.find((l) => l.msg === "stream ended" && l.name === "Gone");
      assert.equal(ended?.reason, "cancelled");
    });

    it("should make no more messages than the client reads (pull-based backpressure)", async () => {
      const r = await get(`${srv.url}/stream?name=Slow&interval=0s`);
      assert.match(await next(r), line("Slow", 0));
      // We read no further: the socket buffers fill, and the server must then stop pulling messages.
      const streams = srv.server.streams;
      let seen = -1;
      let stableSince = performance.now();
      await eventually(
        () => {
          if (streams.messagesSent !== seen) {
            seen = streams.messagesSent;
            stableSince = performance.now();
          }
          return performance.now() - stableSince > 300;
        },
        10_000,
        "the server to stop producing for a client that does not read",
      );
      assert.ok(seen < 200_000, `stopped after ${seen} messages, bounded by socket buffers`);
      r.destroy();
    });
  });

  describe("as Server-Sent Events (Accept: text/event-stream)", () => {
    const sse = { accept: "text/event-stream" };

    it("should send each message as an event with its counter as id", async () => {
      const r = await get(`${srv.url}/stream?name=Eve&limit=2&start_at=4&interval=0s`, sse);
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-type"], "text/event-stream; charset=utf-8");
      assert.equal(r.headers["cache-control"], "no-cache");
      const lines = await r.rest();
      assert.equal(lines.length, 6, lines.join("\n"));
      assert.equal(lines[0], "id: 4");
      assert.match(lines[1]?.replace(/^data: /, "") ?? "", line("Eve", 4));
      assert.equal(lines[2], "");
      assert.equal(lines[3], "id: 5");
      assert.match(lines[4]?.replace(/^data: /, "") ?? "", line("Eve", 5));
      assert.equal(lines[5], "");
    });

    it("should resume after Last-Event-ID with what is left of the limit", async () => {
      const url = `${srv.url}/stream?name=Eve&limit=4&start_at=10&interval=0s`;
      const lines = await (await get(url, { ...sse, "last-event-id": "11" })).rest();
      assert.deepEqual(
        lines.filter((l) => l.startsWith("id: ")),
        ["id: 12", "id: 13"],
      );
    });

    it("should answer 204 (EventSource stops reconnecting) once Last-Event-ID is the last counter", async () => {
      const url = `${srv.url}/stream?name=Eve&limit=4&start_at=10&interval=0s`;
      const r = await get(url, { ...sse, "last-event-id": "13" });
      assert.equal(r.status, 204);
      assert.deepEqual(await r.rest(), []);
    });

    it("should send a heartbeat comment while idle, and stop it with the stream", async () => {
      const r = await get(`${srv.url}/stream?name=Idle&interval=3600s`, sse);
      assert.equal(await next(r), "id: 0");
      assert.match(await next(r), /^data: /);
      assert.equal(await next(r), "");
      assert.equal(await next(r), ": heartbeat");
      assert.equal(await next(r), ": heartbeat");
      r.destroy();
      // afterEach checks that the stream and its waits are gone; the heartbeat timer goes with them.
    });
  });

  describe("with a bad request", () => {
    const cases: Array<[query: string, names: string]> = [
      [`name=${"x".repeat(101)}`, "name"],
      ["name=a%01b", "name"],
      ["interval=abc", "interval"],
      ["interval=2", "interval"],
      ["interval=-1s", "interval"],
      ["interval=3601s", "interval"],
      ["limit=-1", "limit"],
      ["limit=1.5", "limit"],
      ["limit=ten", "limit"],
      ["limit=18446744073709551616", "limit"],
      ["start_at=x", "start_at"],
      ["start_at=18446744073709551615&limit=2", "start_at"],
      ["nmae=Bob", "nmae"],
      ["name=a&name=b", "name"],
    ];
    for (const [query, names] of cases) {
      it(`should answer 400 invalid_argument naming ${names} for ?${query.slice(0, 40)}`, async () => {
        const r = await get(`${srv.url}/stream?${query}`);
        assert.equal(r.status, 400);
        assert.equal(r.headers["content-type"], "application/json");
        const body = JSON.parse((await r.rest()).join("\n"));
        assert.equal(body.code, "invalid_argument");
        assert.ok(body.message.startsWith(`${names} `), body.message);
      });
    }

    it("should log a bad query as stream rejected and count it as an invalid_argument error, like an RPC's", async () => {
      const before = await scrapeMetrics(srv.url);
      const r = await get(`${srv.url}/stream?name=Rejected&interval=fast`, { "x-request-id": "bad-query-1" });
      assert.equal(r.status, 400);
      await r.rest();
      const rejected = srv.logs.find((l) => l.msg === "stream rejected" && l.id === "bad-query-1");
      assert.ok(rejected, "a stream rejected line");
      assert.equal(rejected.level, "info");
      assert.equal(rejected.protocol, "ndjson");
      assert.equal(rejected.code, "invalid_argument");
      assert.match(String(rejected.error), /^interval /);
      const now = await scrapeMetrics(srv.url);
      const delta = (series: string) => sample(now, series) - sample(before, series);
      assert.equal(delta('request_errors_total{code="invalid_argument"}'), 1);
      assert.equal(delta('streams_ended_total{reason="error"}'), 1);
      assert.equal(delta('streams_started_total{protocol="ndjson"}'), 0, "a rejected stream never started");
    });

    for (const [value, why] of [
      ["abc", "not a number"],
      ["3", "before start_at"],
    ]) {
      it(`should answer 400 naming Last-Event-ID when it is ${why}`, async () => {
        const r = await get(`${srv.url}/stream?start_at=10`, { accept: "text/event-stream", "last-event-id": value });
        assert.equal(r.status, 400);
        const body = JSON.parse((await r.rest()).join("\n"));
        assert.equal(body.code, "invalid_argument");
        assert.ok(body.message.startsWith("Last-Event-ID "), body.message);
      });
    }
  });

  describe("with another method", () => {
    for (const method of ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"]) {
      it(`should answer ${method} with 405 and Allow: GET`, async () => {
        const r = await get(`${srv.url}/stream?name=Bob`, {}, method);
        assert.equal(r.status, 405);
        assert.equal(r.headers.allow, "GET");
        await r.rest();
        assert.equal(srv.server.streams.liveCount, 0);
      });
    }
  });

  describe("over HTTP/2", () => {
    it("should stream NDJSON lines and SSE events", async () => {
      const session = http2.connect(srv.url);
      try {
        const ndjson = await h2get(session, "/stream?name=H2&limit=2&interval=0s", {});
        assert.equal(ndjson.status, 200);
        assert.equal(ndjson.headers["content-type"], "application/x-ndjson");
        const lines = ndjson.body.trimEnd().split("\n");
        assert.equal(lines.length, 2);
        for (const [i, l] of lines.entries()) assert.match(l, line("H2", i));
        const events = await h2get(session, "/stream?name=H2&limit=1&start_at=3", { accept: "text/event-stream" });
        assert.match(events.body, /^id: 3\ndata: \{.*\}\n\n$/);
        const started = srv.logs.find((l) => l.msg === "stream started" && l.name === "H2");
        assert.equal(started?.http, "2.0");
      } finally {
        session.close();
      }
    });

    it("should end the stream when the client resets it", async () => {
      const session = http2.connect(srv.url);
      try {
        const req = session.request({ ":path": "/stream?name=Reset&interval=3600s" });
        await new Promise<void>((resolve) => req.once("data", () => resolve()));
        assert.equal(srv.server.streams.liveCount, 1);
        req.close(http2.constants.NGHTTP2_CANCEL);
        await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end");
      } finally {
        session.close();
      }
    });

    it("should answer a bad value with 400", async () => {
      const session = http2.connect(srv.url);
      try {
        const r = await h2get(session, "/stream?limit=x", {});
        assert.equal(r.status, 400);
        assert.equal(JSON.parse(r.body).code, "invalid_argument");
      } finally {
        session.close();
      }
    });
  });
});

describe("GET /stream at the server's limits", () => {
  it("should answer 429 resource_exhausted past max streams", async () => {
    const srv = await startServer({ maxStreams: 1 });
    try {
      const first = await get(`${srv.url}/stream?interval=3600s`);
      await next(first);
      const second = await get(`${srv.url}/stream?limit=1`);
      assert.equal(second.status, 429);
      assert.equal(JSON.parse((await second.rest()).join("")).code, "resource_exhausted");
      first.destroy();
      await eventually(() => srv.server.streams.liveCount === 0, 5000, "the first stream to end");
    } finally {
      await srv.close();
    }
  });

  it("should end NDJSON with an error line and SSE with an error event at shutdown", async () => {
    const srv = await startServer();
    const ndjson = await get(`${srv.url}/stream?name=Late&interval=3600s`);
    const sse = await get(`${srv.url}/stream?name=Late&interval=3600s`, { accept: "text/event-stream" });
    await next(ndjson);
    assert.equal(await next(sse), "id: 0");
    await next(sse);
    const closing = srv.close();
    assert.deepEqual(await ndjson.rest(), ['{"error":{"code":"unavailable","message":"server is shutting down"}}']);
    assert.deepEqual(await sse.rest(), [
      "",
      "event: error",
      'data: {"code":"unavailable","message":"server is shutting down"}',
      "",
    ]);
    await closing;
    assert.equal(srv.server.streams.liveCount, 0);
  });

  it("should answer 503 unavailable to a new stream during shutdown", async () => {
    const srv = await startServer();
    const held = await get(`${srv.url}/stream?interval=3600s`, { connection: "keep-alive" });
    await next(held);
    srv.server.streams.stopAll();
    const r = await get(`${srv.url}/stream?limit=1`);
    assert.equal(r.status, 503);
    assert.equal(JSON.parse((await r.rest()).join("")).code, "unavailable");
    await held.rest();
    await srv.close();
  });
});

function h2get(
  session: http2.ClientHttp2Session,
  path: string,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": path, ...headers });
    let response: http2.IncomingHttpHeaders = {};
    let body = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      response = h;
    });
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => resolve({ status: Number(response[":status"]), headers: response, body }));
    req.on("error", reject);
  });
}
