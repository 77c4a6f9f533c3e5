import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { serviceVersion } from "../src/shared/version.js";
import { clientCases, drain, streamClient } from "./support/clients.js";
import { grpcCall, grpcStatusOf } from "./support/h2-grpc.js";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./support/otlp-receiver.js";
import { type ServerProc, startProcess, startServerProcess, stop } from "./support/process.js";
import { generatePythonStubs } from "./support/python.js";
import { requestEnvelope } from "./support/wire.js";

// One server span per stream, on every road, sent over OTLP/HTTP to a real
// receiver on loopback that decodes what the exporter actually sent. The
// servers are real processes configured by OpenTelemetry's own environment
// variables, as an operator would set them.

const SERVER = 2;
const CLIENT = 3;
const UNSET = 0;
const ERROR = 2;

/** A fresh W3C trace context, as another service's client would send it. */
function traceContext() {
  const traceId = randomBytes(16).toString("hex");
  const parentId = randomBytes(8).toString("hex");
  return { traceId, parentId, headers: { traceparent: `00-${traceId}-${parentId}-01`, tracestate: "vendor=t61" } };
}

function tracingEnv(receiver: OtlpReceiver, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    // Export within 20 ms of a span's end, not the default 5 s.
    OTEL_BSP_SCHEDULE_DELAY: "20",
    OTEL_SERVICE_NAME: "stream-under-test",
    OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test",
    OTEL_TRACES_SAMPLER: undefined,
    OTEL_EXPORTER_OTLP_PROTOCOL: undefined,
    ...extra,
  };
}

/** The server's JSON log lines with this trace id. */
function logLines(proc: ServerProc, traceId: string): Record<string, unknown>[] {
  return proc.lines
    .filter((l) => l.includes(traceId))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.trace_id === traceId);
}

/** The one span of the trace, once it arrived. */
async function onlySpan(receiver: OtlpReceiver, traceId: string): Promise<ReceivedSpan> {
  const spans = await receiver.waitForTrace(traceId);
  assert.equal(
    spans.length,
    1,
    JSON.stringify(spans, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
  );
  return spans[0] as ReceivedSpan;
}

describe("stream spans over OTLP/HTTP", () => {
  let receiver: OtlpReceiver;
  let srv: ServerProc;
  let stock: ServerProc;
  /** Every trace a test started, and the spans it expects of it once the servers stopped. */
  const expected = new Map<string, number>();

  before(async () => {
    receiver = await startOtlpReceiver();
    [srv, stock] = await Promise.all([
      startServerProcess([], 0, tracingEnv(receiver)),
      startServerProcess(["--fast-path", "off"], 0, tracingEnv(receiver)),
    ]);
  });
  after(async () => {
    await Promise.all([srv && stop(srv), stock && stop(stock)]);
    await receiver?.close();
  });

  it("should say at start that tracing is on, over protobuf", () => {
    const on = srv.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "tracing on");
    assert.equal(on?.protocol, "http/protobuf");
  });

  it("should name the version package.json states as service.version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(serviceVersion, pkg.version);
  });

  const roads = [
    ...clientCases.map((c) => ({
      name: c.name,
      protocol: c.protocol,
      httpVersion: c.httpVersion === "2" ? "2" : "1.1",
      fastPathOff: false,
      run: (url: string, headers: Record<string, string>) =>
        drain(streamClient(c, url).stream({ name: "T", limit: 2n, interval: durationFromMs(0) }, { headers })),
    })),
    {
      name: "gRPC with --fast-path off (connect-node)",
      protocol: "grpc",
      httpVersion: "2",
      fastPathOff: true,
      run: (url: string, headers: Record<string, string>) =>
        drain(
          streamClient(clientCases[0] as (typeof clientCases)[0], url).stream(
            { name: "T", limit: 2n, interval: durationFromMs(0) },
            { headers },
          ),
        ),
    },
    ...(["ndjson", "sse"] as const).map((protocol) => ({
      name: `GET /stream as ${protocol.toUpperCase()}`,
      protocol,
      httpVersion: "1.1",
      fastPathOff: false,
      async run(url: string, headers: Record<string, string>) {
        const accept = protocol === "sse" ? { accept: "text/event-stream" } : {};
        const res = await fetch(`${url}/stream?name=T&limit=2&interval=0s`, { headers: { ...headers, ...accept } });
        assert.equal(res.status, 200);
        await res.text();
        return undefined;
      },
    })),
  ];

  for (const road of roads) {
    it(`should make one server span continuing the caller's trace: ${road.name}`, async () => {
      const server = road.fastPathOff ? stock : srv;
      const { traceId, parentId, headers } = traceContext();
      expected.set(traceId, 1);
      assert.equal(await road.run(server.url, headers), undefined);
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.name, "stream.v1.StreamService/Stream");
      assert.equal(span.kind, SERVER);
      assert.equal(span.parentSpanId, parentId);
      assert.equal(span.traceState, "vendor=t61");
      assert.equal(span.status.code, UNSET);
      assert.ok(span.endNs >= span.startNs);
      const a = span.attributes;
      assert.equal(a["rpc.method"], "stream.v1.StreamService/Stream");
      assert.equal(a["stream.protocol"], road.protocol);
      assert.equal(a["stream.messages_sent"], 2);
      assert.equal(a["stream.end_reason"], "limit");
      assert.equal(a["network.protocol.name"], "http");
      assert.equal(a["network.protocol.version"], road.httpVersion);
      assert.equal(a["network.peer.address"], "127.0.0.1");
      assert.equal(typeof a["network.peer.port"], "number");
      assert.equal(a["error.type"], undefined);
      if (road.protocol === "grpc" || road.protocol === "grpc-web") {
        assert.equal(a["rpc.system.name"], "grpc");
        assert.equal(a["rpc.status_code"], "OK");
      } else if (road.protocol === "connect") {
        assert.equal(a["rpc.system.name"], "connectrpc");
        assert.equal(a["rpc.status_code"], undefined, "Connect has no code for success");
      } else {
        assert.equal(a["rpc.system.name"], undefined, "GET /stream is HTTP, not RPC");
        assert.equal(a["http.request.method"], "GET");
        assert.equal(a["http.route"], "/stream");
        assert.equal(a["http.response.status_code"], 200);
      }
      assert.equal(a["rpc.system"], undefined, "the deprecated names only with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup");
      assert.equal(span.resource["service.name"], "stream-under-test");
      assert.equal(span.resource["service.version"], serviceVersion);
      assert.equal(span.resource["deployment.environment.name"], "test");
      assert.equal(span.scope, "stream-service");
      // The call's log lines carry the span's ids (stdout may bring them after the span).
      await server.waitUntil(() => logLines(server, traceId).length >= 2);
      assert.deepEqual(
        logLines(server, traceId).map((l) => [l.msg, l.span_id]),
        [
          ["stream started", span.spanId],
          ["stream ended", span.spanId],
        ],
      );
    });
  }

  describe("on each kind of end", () => {
    it("should record a client's cancel as CANCELLED, not as the server's error", async () => {
      const { traceId, headers } = traceContext();
      expected.set(traceId, 1);
      const abort = new AbortController();
      const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
      const call = client.stream({ name: "C", interval: durationFromMs(60_000) }, { headers, signal: abort.signal });
      for await (const _ of call) break;
      abort.abort();
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.attributes["rpc.status_code"], "CANCELLED");
      assert.equal(span.attributes["stream.end_reason"], "cancelled");
      assert.equal(span.attributes["stream.messages_sent"], 1);
      assert.equal(span.attributes["error.type"], undefined);
      assert.equal(span.status.code, UNSET);
    });

    it("should spell a Connect cancel the Connect way", async () => {
      const { traceId, headers } = traceContext();
      expected.set(traceId, 1);
      const abort = new AbortController();
      const client = createClient(StreamService, createConnectTransport({ baseUrl: srv.url, httpVersion: "1.1" }));
      for await (const _ of client.stream({ interval: durationFromMs(60_000) }, { headers, signal: abort.signal })) {
        break;
      }
      abort.abort();
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.attributes["rpc.status_code"], "canceled");
      assert.equal(span.status.code, UNSET);
    });

    it("should record a deadline as DEADLINE_EXCEEDED, an error of the server's", async () => {
      const { traceId, headers } = traceContext();
      expected.set(traceId, 1);
      // grpc-timeout by hand: a client's own timer could cancel first.
      const x = await grpcCall(srv.url, requestEnvelope({ interval: durationFromMs(60_000) }), {
        headers: { ...headers, "grpc-timeout": "200m" },
      });
      assert.equal(grpcStatusOf(x).code, Code.DeadlineExceeded);
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.attributes["rpc.status_code"], "DEADLINE_EXCEEDED");
      assert.equal(span.attributes["error.type"], "DEADLINE_EXCEEDED");
      assert.equal(span.attributes["stream.end_reason"], "deadline");
      assert.equal(span.status.code, ERROR);
      assert.ok(span.status.message.length > 0);
    });

    it("should record a rejected request as a span ended by error, with its code, and log it with the ids", async () => {
      const { traceId, parentId, headers } = traceContext();
      expected.set(traceId, 1);
      const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
      assert.equal((await drain(client.stream({ name: "x".repeat(101) }, { headers })))?.code, Code.InvalidArgument);
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.parentSpanId, parentId);
      assert.equal(span.attributes["rpc.status_code"], "INVALID_ARGUMENT");
      assert.equal(span.attributes["stream.end_reason"], "error");
      assert.equal(span.attributes["stream.messages_sent"], 0);
      assert.equal(span.status.code, UNSET, "a client's bad request is not the server's error");
      await srv.waitUntil(() => logLines(srv, traceId).length >= 1);
      assert.deepEqual(
        logLines(srv, traceId).map((l) => [l.msg, l.span_id]),
        [["stream rejected", span.spanId]],
      );
    });

    it("should record GET /stream's refusal of a bad query with the HTTP status it answered", async () => {
      const { traceId, headers } = traceContext();
      expected.set(traceId, 1);
      const res = await fetch(`${srv.url}/stream?interval=fast`, { headers });
      assert.equal(res.status, 400);
      await res.text();
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.attributes["http.response.status_code"], 400);
      assert.equal(span.attributes["rpc.status_code"], "invalid_argument");
      assert.equal(span.attributes["stream.end_reason"], "error");
    });

    it("should start a trace of its own when the caller sends none, or a malformed one", async () => {
      for (const [name, headers] of [
        ["NoParent", {}],
        ["BadParent", { traceparent: "00-not-a-trace-01" }],
        ["ZeroParent", { traceparent: `00-${"0".repeat(32)}-${"1".repeat(16)}-01` }],
      ] as const) {
        const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
        assert.equal(await drain(client.stream({ name, limit: 1n }, { headers })), undefined);
        const ended = await srv.waitForLine((l) => l.includes('"stream ended"') && l.includes(`"name":"${name}"`));
        const traceId = String(JSON.parse(ended).trace_id);
        assert.match(traceId, /^[0-9a-f]{32}$/);
        assert.notEqual(traceId, "0".repeat(32));
        expected.set(traceId, 1);
        const span = await onlySpan(receiver, traceId);
        assert.equal(span.parentSpanId, "", `${name}: a root span`);
      }
    });
  });

  it("should make one span per stream for a Python grpcio client that sends a traceparent", async () => {
    const stubs = await generatePythonStubs();
    try {
      const { traceId, parentId, headers } = traceContext();
      expected.set(traceId, 1);
      const got = await stubs.call(`127.0.0.1:${srv.port}`, {
        op: "stream",
        name: "Py",
        limit: 3,
        interval_ms: 0,
        metadata: Object.entries(headers),
      });
      assert.equal(got.code, "OK");
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.parentSpanId, parentId);
      assert.equal(span.attributes["rpc.system.name"], "grpc");
      assert.equal(span.attributes["rpc.status_code"], "OK");
      assert.equal(span.attributes["stream.messages_sent"], 3);
    } finally {
      stubs.remove();
    }
  });

  describe("the Node client (npm run client)", () => {
    it("should export its own span, parent of the server's, when OTEL_EXPORTER_OTLP_ENDPOINT is set", async () => {
      const args = ["--url", srv.url, "--protocol", "grpc", "--name", "NodeTraced", "--limit", "2", "--interval", "0s"];
      const client = startProcess("src/client-main.ts", args, tracingEnv(receiver, { OTEL_SERVICE_NAME: undefined }));
      assert.equal(await client.exited, 0, client.stderr());
      const clientSpan = receiver.spans.find(
        (s) => s.kind === CLIENT && s.resource["service.name"] === "stream-client",
      );
      assert.ok(clientSpan, "the client's span, exported before it exited");
      expected.set(clientSpan.traceId, 2);
      const spans = await receiver.waitForTrace(clientSpan.traceId, 2);
      const server = spans.find((s) => s.kind === SERVER);
      assert.equal(server?.parentSpanId, clientSpan.spanId);
      assert.equal(clientSpan.parentSpanId, "");
      assert.equal(clientSpan.attributes["rpc.status_code"], "OK");
      assert.equal(clientSpan.attributes["server.address"], "127.0.0.1");
      assert.equal(clientSpan.attributes["server.port"], srv.port);
    });

    it("should still send a traceparent, which the server continues, when it exports nothing", async () => {
      const args = ["--url", srv.url, "--name", "NodeUntraced", "--limit", "1", "--interval", "0s"];
      const client = startProcess("src/client-main.ts", args, { OTEL_EXPORTER_OTLP_ENDPOINT: undefined });
      assert.equal(await client.exited, 0, client.stderr());
      const ended = await srv.waitForLine((l) => l.includes('"stream ended"') && l.includes('"NodeUntraced"'));
      const traceId = String(JSON.parse(ended).trace_id);
      expected.set(traceId, 1);
      const span = await onlySpan(receiver, traceId);
      assert.match(span.parentSpanId, /^[0-9a-f]{16}$/, "the client's traceparent was its parent");
    });
  });

  it("should have exported exactly the spans expected, once the servers stopped and flushed", async () => {
    await Promise.all([stop(srv), stop(stock)]);
    assert.ok(expected.size >= 15);
    for (const [traceId, count] of expected) {
      assert.equal(receiver.spans.filter((s) => s.traceId === traceId).length, count, `trace ${traceId}`);
    }
    assert.ok(receiver.requests.every((r) => r.contentType === "application/x-protobuf"));
    assert.ok(receiver.requests.every((r) => r.userAgent.startsWith("OTel-OTLP-Exporter-JavaScript/")));
  });
});

describe("tracing configured by the environment", () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(() => receiver?.close());

  it("should export the spans of streams cut by shutdown, within the grace period", async () => {
    // Spans would wait 10 minutes in the batch: only the flush on shutdown can send this one.
    const srv = await startServerProcess(
      ["--shutdown-grace", "5s"],
      0,
      tracingEnv(receiver, { OTEL_BSP_SCHEDULE_DELAY: "600000" }),
    );
    const { traceId, headers } = traceContext();
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    const call = drain(client.stream({ name: "S", interval: durationFromMs(60_000) }, { headers }));
    await srv.waitForLine((l) => l.includes('"stream started"') && l.includes(traceId));
    const started = performance.now();
    assert.equal(await stop(srv), 0);
    assert.ok(performance.now() - started < 5000, "within the grace period");
    assert.equal((await call)?.code, Code.Unavailable);
    const span = await onlySpan(receiver, traceId);
    assert.equal(span.attributes["rpc.status_code"], "UNAVAILABLE");
    assert.equal(span.attributes["error.type"], "UNAVAILABLE");
    assert.equal(span.attributes["stream.end_reason"], "shutdown");
    assert.equal(span.status.code, ERROR);
    assert.equal(span.status.message, "server is shutting down");
  });

  it("should send OTLP/JSON with OTEL_EXPORTER_OTLP_PROTOCOL=http/json, and the old attribute names with rpc/dup", async () => {
    const env = tracingEnv(receiver, {
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SEMCONV_STABILITY_OPT_IN: "http,rpc/dup",
    });
    const srv = await startServerProcess([], 0, env);
    try {
      const { traceId, parentId, headers } = traceContext();
      const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
      assert.equal(await drain(client.stream({ limit: 2n, interval: durationFromMs(0) }, { headers })), undefined);
      const span = await onlySpan(receiver, traceId);
      assert.equal(span.parentSpanId, parentId);
      assert.deepEqual(
        [
          span.attributes["rpc.system.name"],
          span.attributes["rpc.status_code"],
          span.attributes["stream.messages_sent"],
        ],
        ["grpc", "OK", 2],
      );
      assert.deepEqual(
        [span.attributes["rpc.system"], span.attributes["rpc.service"], span.attributes["rpc.grpc.status_code"]],
        ["grpc", "stream.v1.StreamService", 0],
      );
      assert.ok(receiver.requests.some((r) => r.contentType === "application/json"));
    } finally {
      await stop(srv);
    }
  });

  it("should log the caller's trace id but export nothing when the sampler drops everything", async () => {
    const srv = await startServerProcess([], 0, tracingEnv(receiver, { OTEL_TRACES_SAMPLER: "always_off" }));
    const { traceId, parentId, headers } = traceContext();
    const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
    assert.equal(await drain(client.stream({ limit: 1n }, { headers })), undefined);
    const ended = JSON.parse(await srv.waitForLine((l) => l.includes('"stream ended"')));
    assert.equal(ended.trace_id, traceId);
    assert.match(ended.span_id, /^[0-9a-f]{16}$/);
    assert.notEqual(ended.span_id, parentId);
    assert.equal(await stop(srv), 0);
    assert.equal(receiver.spans.filter((s) => s.traceId === traceId).length, 0);
  });

  it("should make no span and log no trace ids when no endpoint is set", async () => {
    const srv = await startServerProcess([], 0, {
      OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
    });
    try {
      const { headers } = traceContext();
      const client = streamClient(clientCases[0] as (typeof clientCases)[0], srv.url);
      assert.equal(await drain(client.stream({ name: "Off", limit: 1n }, { headers })), undefined);
      const ended = JSON.parse(await srv.waitForLine((l) => l.includes('"stream ended"')));
      assert.equal(ended.trace_id, undefined);
      assert.equal(ended.span_id, undefined);
      assert.ok(!srv.lines.some((l) => l.includes('"tracing on"')));
    } finally {
      await stop(srv);
    }
  });

  it("should refuse an OTLP protocol it cannot send before it listens, with exit status 2", async () => {
    const proc = startProcess(
      "src/main.ts",
      ["--port", "0"],
      tracingEnv(receiver, { OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }),
    );
    assert.equal(await proc.exited, 2);
    assert.match(
      proc.stderr(),
      /^configuration error: OTEL_EXPORTER_OTLP_PROTOCOL: expected http\/protobuf or http\/json/,
    );
  });
});
