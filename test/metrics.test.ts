import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { ConfigError, parseConfig } from "../src/config/config.js";
import { durationFromMs } from "../src/shared/duration.js";
import { drain } from "./support/clients.js";
import { grpcCall, grpcStatusOf } from "./support/h2-grpc.js";
import { sample, total } from "./support/metrics-text.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { requestEnvelope } from "./support/wire.js";

/** GET over a connection that closes after the response (no keep-alive socket left for shutdown to wait on). */
function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
      })
      .on("error", reject);
  });
}

/** The value of one sample in Prometheus text, e.g. sample(text, 'streams_ended_total{reason="limit"}'); 0 when absent. */
async function scrape(srv: TestServer): Promise<string> {
  const res = await get(`${srv.url}/metrics`);
  assert.equal(res.status, 200);
  return res.body;
}

describe("GET /metrics", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  it("should serve the Prometheus text format with the standard process and Node metrics", async () => {
    const res = await get(`${srv.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^# TYPE process_cpu_user_seconds_total counter$/m);
    assert.match(res.body, /^# TYPE nodejs_eventloop_lag_seconds gauge$/m);
    assert.match(res.body, /^# TYPE stream_duration_seconds histogram$/m);
  });

  it("should count streams started and ended by protocol and reason, messages and durations", async () => {
    const before = await scrape(srv);
    const grpc = createClient(StreamService, createGrpcTransport({ baseUrl: srv.url }));
    const connect = createClient(StreamService, createConnectTransport({ baseUrl: srv.url, httpVersion: "1.1" }));
    assert.equal(await drain(grpc.stream({ limit: 3n, interval: durationFromMs(0) })), undefined);
    assert.equal(await drain(connect.stream({ limit: 2n, interval: durationFromMs(0) })), undefined);
    const now = await scrape(srv);
    const delta = (series: string) => sample(now, series) - sample(before, series);
    assert.equal(delta('streams_started_total{protocol="grpc"}'), 1);
    assert.equal(delta('streams_started_total{protocol="connect"}'), 1);
    assert.equal(delta('streams_ended_total{reason="limit"}'), 2);
    assert.equal(delta("stream_messages_sent_total"), 5);
    assert.equal(delta("stream_duration_seconds_count"), 2);
    assert.equal(sample(now, 'streams_live{protocol="grpc"}'), 0);
    assert.equal(sample(now, "stream_messages_sent_total"), srv.server.streams.messagesSent);
  });

  it("should show a stream as live while it runs, and count the client's cancel as cancelled, not as an error", async () => {
    const before = await scrape(srv);
    const client = createClient(StreamService, createGrpcTransport({ baseUrl: srv.url }));
    const abort = new AbortController();
    const done = drain(client.stream({ interval: durationFromMs(60_000) }, { signal: abort.signal }));
    await eventually(() => srv.server.streams.liveCount === 1, 5000, "the stream to open");
    assert.equal(sample(await scrape(srv), 'streams_live{protocol="grpc"}'), 1);
    abort.abort();
    assert.equal((await done)?.code, Code.Canceled);
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end");
    const now = await scrape(srv);
    assert.equal(sample(now, 'streams_live{protocol="grpc"}'), 0);
    assert.equal(
      sample(now, 'streams_ended_total{reason="cancelled"}') -
        sample(before, 'streams_ended_total{reason="cancelled"}'),
      1,
    );
    // Summed over every code: a cancel counted under any label at all fails here.
    assert.equal(total(now, "request_errors_total") - total(before, "request_errors_total"), 0);
  });

  it("should count a rejected request as ended by error, by its code, without touching the live gauge", async () => {
    const before = await scrape(srv);
    const client = createClient(StreamService, createGrpcTransport({ baseUrl: srv.url }));
    assert.equal((await drain(client.stream({ name: "x".repeat(101) })))?.code, Code.InvalidArgument);
    const now = await scrape(srv);
    const delta = (series: string) => sample(now, series) - sample(before, series);
    assert.equal(delta('streams_ended_total{reason="error"}'), 1);
    assert.equal(delta('request_errors_total{code="invalid_argument"}'), 1);
    assert.equal(delta('streams_started_total{protocol="grpc"}'), 0);
    assert.equal(sample(now, 'streams_live{protocol="grpc"}'), 0);
  });

  it("should count a deadline as ended by deadline and as a DEADLINE_EXCEEDED error", async () => {
    const before = await scrape(srv);
    // grpc-timeout by hand and no timer on this side: a client's own timer
    // can fire first and cancel the call, which the server rightly counts as cancelled.
    const x = await grpcCall(srv.url, requestEnvelope({ interval: durationFromMs(60_000) }), {
      headers: { "grpc-timeout": "200m" },
    });
    assert.equal(grpcStatusOf(x).code, Code.DeadlineExceeded);
    assert.equal(x.rstCode, 0);
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end");
    const now = await scrape(srv);
    const delta = (series: string) => sample(now, series) - sample(before, series);
    assert.equal(delta('streams_ended_total{reason="deadline"}'), 1);
    assert.equal(delta('request_errors_total{code="deadline_exceeded"}'), 1);
  });
});

describe("--metrics off", () => {
  it("should parse on and off, default on, and refuse anything else", () => {
    assert.equal(parseConfig([], {}).metrics, true);
    assert.equal(parseConfig(["--metrics", "off"], {}).metrics, false);
    assert.equal(parseConfig([], { METRICS: "off" }).metrics, false);
    assert.equal(parseConfig(["--metrics", "on"], { METRICS: "off" }).metrics, true);
    assert.throws(() => parseConfig(["--metrics", "yes"], {}), ConfigError);
  });

  it("should leave /metrics unrouted and still stream", async () => {
    const srv = await startServer({ metrics: false });
    try {
      assert.equal((await get(`${srv.url}/metrics`)).status, 404);
      const client = createClient(StreamService, createGrpcTransport({ baseUrl: srv.url }));
      assert.equal(await drain(client.stream({ limit: 2n, interval: durationFromMs(0) })), undefined);
      assert.equal(srv.server.streams.messagesSent, 2);
    } finally {
      await srv.close();
    }
  });
});
