import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, type MessageInitShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import { StreamRequestSchema, StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { type RawExchange, rawExchange } from "./support/raw-exchange.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { envelope, requestEnvelope, streamPath } from "./support/wire.js";

// The differential suite of the lean road for gRPC-Web and Connect (binary
// and JSON), on HTTP/1.1 and HTTP/2: the same raw requests go to a server
// with the lean road and to one without (every request through
// connect-node), and what comes back must be the same, byte for byte but for
// timestamps, dates and generated request ids: status, headers, every
// envelope, the end-of-stream message or gRPC-Web trailers, the error JSON,
// how the response ended. test/fast-path.test.ts does the same for gRPC.

interface Protocol {
  name: string;
  contentType: string;
  /** The request message in its envelope, in this protocol's encoding. */
  request(init: MessageInitShape<typeof StreamRequestSchema>, flags?: number): Buffer;
  /** A message that does not parse, in this protocol's encoding. */
  malformed: Buffer;
  timeoutHeader: string;
  /** A timeout this protocol reads as zero, and one it refuses. */
  zeroTimeout: string;
  badTimeout: string;
  encodingHeader: string;
  acceptEncodingHeader: string;
  /** The flag of this protocol's last envelope (Connect end-of-stream, gRPC-Web trailers). */
  endFlag: number;
}

const protocols: Protocol[] = [
  {
    name: "gRPC-Web",
    contentType: "application/grpc-web+proto",
    request: requestEnvelope,
    malformed: envelope(Buffer.from([0x0a, 0x7f, 0x41])),
    timeoutHeader: "grpc-timeout",
    zeroTimeout: "0m",
    badTimeout: "1x",
    encodingHeader: "grpc-encoding",
    acceptEncodingHeader: "grpc-accept-encoding",
    endFlag: 0x80,
  },
  {
    name: "Connect binary",
    contentType: "application/connect+proto",
    request: requestEnvelope,
    malformed: envelope(Buffer.from([0x0a, 0x7f, 0x41])),
    timeoutHeader: "connect-timeout-ms",
    zeroTimeout: "0",
    badTimeout: "12345678901",
    encodingHeader: "connect-content-encoding",
    acceptEncodingHeader: "connect-accept-encoding",
    endFlag: 0x02,
  },
  {
    name: "Connect JSON",
    contentType: "application/connect+json",
    request: (init, flags = 0) =>
      envelope(Buffer.from(toJsonString(StreamRequestSchema, create(StreamRequestSchema, init))), flags),
    malformed: envelope(Buffer.from('{"name": ')),
    timeoutHeader: "connect-timeout-ms",
    zeroTimeout: "0",
    badTimeout: "-1",
    encodingHeader: "connect-content-encoding",
    acceptEncodingHeader: "connect-accept-encoding",
    endFlag: 0x02,
  },
];

const zero = durationFromMs(0);
const maxCounter = 2n ** 64n - 1n;

interface Row {
  name: string;
  body: Buffer;
  headers?: Record<string, string | undefined>;
  path?: string;
  /** Messages both must send before they end. */
  messages?: number;
  /** The code the end says, or "ok"; "http" for a plain HTTP answer. */
  outcome: string;
}

function rows(p: Protocol): Row[] {
  const req = (init: MessageInitShape<typeof StreamRequestSchema>) => p.request({ interval: zero, ...init });
  return [
    { name: "normal", body: req({ name: "Bob", limit: 3n }), messages: 3, outcome: "ok" },
    { name: "empty name", body: req({ limit: 1n }), messages: 1, outcome: "ok" },
    { name: "limit 25", body: req({ name: "Ann", limit: 25n }), messages: 25, outcome: "ok" },
    { name: "start_at up to 2^64-1", body: req({ limit: 2n, startAt: maxCounter - 1n }), messages: 2, outcome: "ok" },
    { name: "unicode name", body: req({ name: 'Zoë 🐙 "q" \\', limit: 2n }), messages: 2, outcome: "ok" },
    {
      name: "x-request-id echoed",
      body: req({ limit: 1n }),
      headers: { "x-request-id": "abc-123" },
      messages: 1,
      outcome: "ok",
    },
    {
      name: "insane x-request-id",
      body: req({ limit: 1n }),
      headers: { "x-request-id": "a b" },
      messages: 1,
      outcome: "ok",
    },
    {
      name: "accepts gzip",
      body: req({ limit: 2n }),
      headers: { [p.acceptEncodingHeader]: "gzip, br" },
      messages: 2,
      outcome: "ok",
    },
    {
      name: "encoding identity",
      body: req({ limit: 1n }),
      headers: { [p.encodingHeader]: "identity" },
      messages: 1,
      outcome: "ok",
    },
    {
      name: "connect-protocol-version",
      body: req({ limit: 1n }),
      headers: { "connect-protocol-version": "1" },
      messages: 1,
      outcome: "ok",
    },
    {
      name: "an allowed Origin",
      body: req({ limit: 1n }),
      headers: { origin: "https://app.example" },
      messages: 1,
      outcome: "ok",
    },
    {
      name: "another Origin",
      body: req({ limit: 1n }),
      headers: { origin: "https://evil.example" },
      messages: 1,
      outcome: "ok",
    },
    { name: "name > 100 chars", body: req({ name: "x".repeat(101), limit: 1n }), outcome: "invalid_argument" },
    { name: "name with control chars", body: req({ name: "a\nb", limit: 1n }), outcome: "invalid_argument" },
    { name: "interval < 0", body: req({ interval: durationFromMs(-1000), limit: 1n }), outcome: "invalid_argument" },
    {
      name: "interval > 1h",
      body: req({ interval: durationFromMs(3_601_000), limit: 1n }),
      outcome: "invalid_argument",
    },
    {
      name: "start_at + limit past 2^64-1",
      body: req({ startAt: maxCounter, limit: 2n }),
      outcome: "invalid_argument",
    },
    { name: "oversize request > 4 KiB", body: req({ name: "x".repeat(5000) }), outcome: "resource_exhausted" },
    {
      name: "oversize length prefix alone",
      body: envelope(Buffer.alloc(0), 0, 1 << 20),
      outcome: "resource_exhausted",
    },
    { name: "malformed message", body: p.malformed, outcome: "malformed" },
    { name: "truncated envelope", body: req({ name: "Bob" }).subarray(0, 7), outcome: "invalid_argument" },
    { name: "truncated envelope header", body: Buffer.from([0, 0, 0]), outcome: "invalid_argument" },
    { name: "empty body", body: Buffer.alloc(0), outcome: "unimplemented" },
    { name: "two envelopes", body: Buffer.concat([req({ limit: 1n }), req({ limit: 1n })]), outcome: "unimplemented" },
    { name: "compressed flag without encoding", body: p.request({ limit: 1n }, 1), outcome: "internal" },
    {
      name: "an end-flag envelope before the message",
      body: Buffer.concat([envelope(Buffer.from("{}"), p.endFlag), req({ limit: 1n })]),
      messages: 1,
      outcome: "ok",
    },
    {
      name: "timeout invalid",
      body: req({ limit: 1n }),
      headers: { [p.timeoutHeader]: p.badTimeout },
      outcome: "invalid_argument",
    },
    {
      name: "timeout 0",
      body: req({ limit: 1n }),
      headers: { [p.timeoutHeader]: p.zeroTimeout },
      outcome: "deadline_exceeded",
    },
    // Not for the lean road: these go to connect-node on both servers.
    {
      name: "request compressed (gzip)",
      body: req({ limit: 1n }),
      headers: { [p.encodingHeader]: "gzip" },
      outcome: "any",
    },
    { name: "a query string", body: req({ limit: 1n }), path: `${streamPath}?x=1`, outcome: "any" },
    { name: "Expect: 100-continue", body: req({ limit: 1n }), headers: { expect: "100-continue" }, outcome: "any" },
  ];
}

/** What must match between the two roads. */
function summary(x: RawExchange) {
  const { "x-request-id": requestId, ...headers } = x.headers;
  const json = String(headers["content-type"]).includes("json");
  return {
    status: x.status,
    headers,
    requestId: typeof requestId === "string",
    headersEndStream: x.headersEndStream,
    trailers: x.trailers,
    envelopes: x.envelopes.map((e) => {
      if (e.flags !== 0) return { flags: e.flags, data: e.data.toString() };
      if (json) return { flags: 0, json: { ...JSON.parse(e.data.toString()), timestamp: "masked" } };
      const m = fromBinary(StreamResponseSchema, e.data);
      // Exactly as protobuf-es writes the message it decodes to: no stray byte.
      assert.ok(Buffer.from(toBinary(StreamResponseSchema, m)).equals(e.data), "a canonical message");
      return { flags: 0, message: m.message, counter: m.counter, stamped: (m.timestamp?.seconds ?? 0n) > 0n };
    }),
    leftover: x.leftover,
    rstCode: x.rstCode,
  };
}

/** What the last envelope (or the trailers) says, for a sanity check that both did not fail alike by accident. */
function outcome(x: RawExchange, p: Protocol): string {
  if (!String(x.headers["content-type"]).startsWith("application/")) return "http";
  const last = x.envelopes.at(-1);
  if (last === undefined || last.flags !== p.endFlag) return "none";
  const text = last.data.toString();
  if (p.endFlag === 0x80) {
    const status = /grpc-status: (\d+)/.exec(text)?.[1];
    const names: Record<string, string> = {
      "0": "ok",
      "3": "invalid_argument",
      "4": "deadline_exceeded",
      "8": "resource_exhausted",
      "12": "unimplemented",
      "13": "internal",
    };
    return names[status ?? ""] ?? `grpc ${status}`;
  }
  const end = JSON.parse(text) as { error?: { code: string } };
  return end.error?.code ?? "ok";
}

describe("the lean road for gRPC-Web and Connect", () => {
  let on: TestServer;
  let off: TestServer;
  before(async () => {
    const cors = { corsOrigins: ["https://app.example"] };
    [on, off] = await Promise.all([
      startServer({ fastPath: true, ...cors }),
      startServer({ fastPath: false, ...cors }),
    ]);
  });
  after(async () => {
    await Promise.all([on.close(), off.close()]);
  });

  for (const p of protocols) {
    for (const h2 of [false, true]) {
      describe(`${p.name} over HTTP/${h2 ? "2" : "1.1"}`, () => {
        for (const row of rows(p)) {
          it(`should answer like connect-node: ${row.name}`, async () => {
            const request = (url: string) =>
              rawExchange({
                url,
                http2: h2,
                path: row.path ?? streamPath,
                headers: { "content-type": p.contentType, ...row.headers },
                body: row.body,
              });
            const [a, b] = await Promise.all([request(on.url), request(off.url)]);
            assert.deepEqual(summary(a), summary(b));
            const got = outcome(a, p);
            if (row.outcome === "malformed") assert.ok(["internal", "invalid_argument"].includes(got), got);
            else if (row.outcome !== "any") assert.equal(got, row.outcome);
            if (row.outcome !== "any") assert.equal(a.envelopes.filter((e) => e.flags === 0).length, row.messages ?? 0);
            if (row.headers?.["x-request-id"] === "abc-123") assert.equal(a.headers["x-request-id"], "abc-123");
          });
        }
      });
    }
  }

  it("should serve every one of these on the lean road itself, never through connect-node's generator", async () => {
    // connect-node's generator gives the core a sink that holds one message; the lean road's batches and flushes.
    const streams = on.server.streams;
    const start = streams.start.bind(streams);
    let opened = 0;
    streams.start = (admission, sink) => {
      if (sink.flush === undefined) opened++;
      return start(admission, sink);
    };
    try {
      for (const p of protocols) {
        for (const h2 of [false, true]) {
          const x = await rawExchange({
            url: on.url,
            http2: h2,
            path: streamPath,
            headers: { "content-type": p.contentType },
            body: p.request({ limit: 2n, interval: zero }),
          });
          assert.equal(x.envelopes.length, 3, `${p.name} over HTTP/${h2 ? 2 : 1.1}`);
        }
      }
      assert.equal(opened, 0);
    } finally {
      delete (streams as Partial<typeof streams>).start;
    }
  });

  it("should leave no stream open on either server", async () => {
    await eventually(() => on.server.streams.liveCount + off.server.streams.liveCount === 0, 2000, "no live streams");
  });
});
