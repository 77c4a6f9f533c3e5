import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";
import fc from "fast-check";
import {
  connectJsonInput,
  envelopesInput,
  h2Input,
  http1Input,
  protobufInput,
  queryInput,
  queryPath,
} from "./support/fuzz-inputs.js";
import {
  type Exchange,
  H2Client,
  http1Raw,
  http1Request,
  parseHttp1Responses,
  type RequestSpec,
  rawH2,
} from "./support/fuzz-wire.js";
import { FrameType, PREFACE } from "./support/h2-frames.js";
import { type ServerProc, startServerProcess, stop } from "./support/process.js";
import { envelope, splitEnvelopes, streamPath } from "./support/wire.js";

// Malformed input over real sockets, to a server process: random and
// mutated HTTP/1.1 heads, raw HTTP/2 frames, envelopes with lying lengths
// and flags on gRPC, gRPC-Web and Connect, protobuf that is not a
// StreamRequest, JSON junk, and query strings of every kind. For every case:
// the process lives and /healthz answers right after; the answer is a clear
// error with the right status and code (or a stream, when the input happens
// to be valid); and no answer carries a stack trace or a file path.
//
// Bounded: each property stops at its number of runs or its time, whichever
// comes first; the seed is fixed (FUZZ_SEED to change it), so a failure
// replays: a failure names FUZZ_SEED and FUZZ_PATH, which run that very case
// again (with --test-name-pattern for its property). FUZZ_RUNS and
// FUZZ_TIME_MS raise the bounds for a longer local run; FUZZ_SHRINK=1 shrinks
// a failing input before it is reported.

const seed = Number(process.env.FUZZ_SEED ?? 20_251_201);
const runs = Number(process.env.FUZZ_RUNS ?? 200);
const timeMs = Number(process.env.FUZZ_TIME_MS ?? 1200);
const params: fc.Parameters<unknown> = {
  seed,
  numRuns: runs,
  interruptAfterTimeLimit: timeMs,
  // A network case that fails is printed as it was; shrinking it could outlast the suite's budget.
  endOnFailure: process.env.FUZZ_SHRINK === undefined,
  timeout: 10_000,
  // With --test-name-pattern naming one property: runs exactly its failing case again.
  ...(process.env.FUZZ_PATH !== undefined ? { path: process.env.FUZZ_PATH } : {}),
};

const root = new URL("..", import.meta.url).pathname;

/** GOAWAY on stream 0, last stream 0, PROTOCOL_ERROR: RFC 9113 section 6.8. */
const GOAWAY_PROTOCOL_ERROR = Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** An input as a line of a report: bytes as text where they are text, cut to 300 characters. */
function show(value: unknown): string {
  const text = JSON.stringify(value, (_, v) =>
    v instanceof Uint8Array || (v && v.type === "Buffer")
      ? Buffer.from(v instanceof Uint8Array ? v : v.data).toString("latin1")
      : v,
  );
  return text.length > 300 ? `${text.slice(0, 300)}... (${text.length} characters)` : text;
}

/**
 * Runs the property within the suite's bounds; on failure, says how to
 * replay it (FUZZ_SEED, and the path fast-check took) and what the input
 * was, cut short: a 100 KB query string would bury the report.
 */
async function holds<Ts>(property: fc.IAsyncProperty<Ts>, serverLog: () => string[]): Promise<void> {
  const run = await fc.check(property, params as fc.Parameters<Ts>);
  if (!run.failed) return;
  const cause = run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance);
  const warnings = serverLog()
    .filter((l) => /"level":"(warn|error)"/.test(l))
    .slice(-5);
  throw new Error(
    `failed after ${run.numRuns} runs; replay: FUZZ_SEED=${run.seed} FUZZ_PATH=${run.counterexamplePath}\n` +
      `input: ${show(run.counterexample)}\n${cause.length > 2000 ? `${cause.slice(0, 2000)}...` : cause}` +
      (warnings.length > 0 ? `\nthe server's last warnings:\n${warnings.join("\n")}` : ""),
  );
}

/** What an answer must never show: a stack frame, a source location, a path on this machine, an error's name. */
const leaks: RegExp[] = [
  /\n\s+at \S/,
  /\bat \S+ \([^)]*:\d+:\d+\)/,
  /\bat (file|node):/,
  /node:internal/,
  /\.[cm]?[jt]s:\d+/,
  /node_modules/,
  /\/work\//,
  /^\s*\w*Error: /m,
];

function assertNoLeak(text: string, where: string): void {
  for (const pattern of [...leaks, new RegExp(root.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))]) {
    const match = pattern.exec(text);
    if (match === null) continue;
    const around = text.slice(Math.max(0, match.index - 80), match.index + 120);
    assert.fail(`${where} shows internals (${pattern}): ${JSON.stringify(around)}`);
  }
}

/** A Connect-style JSON error body: {"code": "...", "message": "..."}. */
function assertJsonError(body: Buffer, where: string): { code: string; message: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    assert.fail(`${where}: the error body is not JSON: ${JSON.stringify(body.toString("latin1").slice(0, 200))}`);
  }
  const { code, message } = parsed as { code?: unknown; message?: unknown };
  assert.equal(typeof code, "string", `${where}: no code in ${body}`);
  assert.equal(typeof message, "string", `${where}: no message in ${body}`);
  assert.notEqual(message, "", `${where}: an empty message`);
  return { code: code as string, message: message as string };
}

/** gRPC's codes for input it cannot take: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL (undecodable). */
const grpcInputCodes = ["3", "8", "12", "13"];
/** The same four in the Connect protocol's spelling. */
const connectInputCodes = ["invalid_argument", "resource_exhausted", "unimplemented", "internal"];

/** Ends the request once the first message envelope arrived: the input was a valid request. */
const firstMessage = (body: Buffer) => splitEnvelopes(body).envelopes.some((e) => e.flags === 0);

function parseGrpcWebTrailer(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of data.toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

/** The answer to a gRPC or gRPC-Web call: a stream that began, or a status for bad input, with a message. */
function assertGrpcAnswer(x: Exchange, web: boolean): void {
  assert.equal(x.status, 200, `HTTP status ${x.status}`);
  if (x.stoppedEarly) return;
  const { envelopes } = splitEnvelopes(x.body);
  const trailer = web ? envelopes.find((e) => (e.flags & 0x80) !== 0) : undefined;
  const trailers = trailer ? parseGrpcWebTrailer(trailer.data) : x.trailers;
  const status = trailers["grpc-status"] ?? x.headers["grpc-status"];
  assert.ok(status !== undefined, `no grpc-status (RST_STREAM ${x.rstCode})`);
  const message = decodeURIComponent(trailers["grpc-message"] ?? x.headers["grpc-message"] ?? "");
  assertNoLeak(message, "grpc-message");
  if (status === "0") {
    assert.ok(
      envelopes.some((e) => e.flags === 0),
      "grpc-status 0 without a message",
    );
    return;
  }
  assert.ok(grpcInputCodes.includes(status), `grpc-status ${status}: ${message}`);
  assert.notEqual(message, "", `grpc-status ${status} without a message`);
}

/** The answer to a Connect streaming call: a stream that began, or an end-stream message with an error for bad input. */
function assertConnectAnswer(x: Exchange): void {
  assertNoLeak(x.body.toString("utf8"), "the Connect answer");
  if (x.status !== 200) {
    const err = assertJsonError(x.body, `HTTP ${x.status}`);
    assert.ok(connectInputCodes.includes(err.code), `code ${err.code}`);
    return;
  }
  if (x.stoppedEarly) return;
  const end = splitEnvelopes(x.body).envelopes.find((e) => (e.flags & 0x02) !== 0);
  assert.ok(end !== undefined, "no end-stream message");
  const parsed = JSON.parse(end.data.toString("utf8")) as { error?: { code?: string; message?: string } };
  if (parsed.error === undefined) {
    assert.ok(
      splitEnvelopes(x.body).envelopes.some((e) => e.flags === 0),
      "OK without a message",
    );
    return;
  }
  assert.ok(connectInputCodes.includes(String(parsed.error.code)), `code ${parsed.error.code}`);
  assert.ok(typeof parsed.error.message === "string" && parsed.error.message !== "", "an error without a message");
}

type Road = "grpc/h2" | "grpc-web/h1" | "connect-proto/h1" | "connect-proto/h2" | "connect-json/h1" | "connect-json/h2";

const contentTypes: Record<Road, Record<string, string>> = {
  "grpc/h2": { "content-type": "application/grpc", te: "trailers" },
  "grpc-web/h1": { "content-type": "application/grpc-web+proto" },
  "connect-proto/h1": { "content-type": "application/connect+proto" },
  "connect-proto/h2": { "content-type": "application/connect+proto" },
  "connect-json/h1": { "content-type": "application/connect+json" },
  "connect-json/h2": { "content-type": "application/connect+json" },
};

describe("fuzzing over real sockets", () => {
  let srv: ServerProc;
  let h2: H2Client;

  const healthz = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.get(`${srv.url}/healthz`, { agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.setTimeout(2000, () => req.destroy(new Error("/healthz did not answer within 2 s")));
      req.on("error", reject);
    });

  /** After every case: the process is alive and /healthz answers. */
  async function stillServing(): Promise<void> {
    const status = await healthz().catch(async (e: unknown) => {
      // A refused connection is most often a process on its way out: say why it went.
      await Promise.race([srv.exited, new Promise((resolve) => setTimeout(resolve, 1000))]);
      assert.equal(srv.child.exitCode, null, `the server exited:\n${srv.stderr()}`);
      throw e;
    });
    assert.equal(status, 200);
  }

  async function call(road: Road, body: Uint8Array): Promise<Exchange> {
    const spec: RequestSpec = {
      method: "POST",
      path: streamPath,
      headers: contentTypes[road],
      body,
      enough: firstMessage,
    };
    return road.endsWith("/h2") ? h2.request(spec) : http1Request(srv.url, spec);
  }

  function assertRpcAnswer(road: Road, x: Exchange): void {
    if (road.startsWith("grpc")) assertGrpcAnswer(x, road === "grpc-web/h1");
    else assertConnectAnswer(x);
  }

  before(async () => {
    srv = await startServerProcess();
    h2 = new H2Client(srv.url);
  });
  // A property that killed the server has failed; the next one gets a new server, so it is still tried.
  beforeEach(async () => {
    if (srv.child.exitCode === null && (await healthz().catch(() => 0)) === 200) return;
    h2.close();
    await stop(srv, "SIGKILL");
    srv = await startServerProcess();
    h2 = new H2Client(srv.url);
  });
  after(async () => {
    h2.close();
    await stop(srv);
  });

  // Found by the HTTP/1.1 property below: connect-node builds new URL(path, "http://" + authority), which throws
  // for "a:b" out of the request handler, and the process exits. One request stopped the server.
  it("should answer a Host or :authority that is no valid authority with 400 and JSON, over HTTP/1.1 and HTTP/2, and live", async () => {
    const { raw } = await http1Raw(
      srv.port,
      Buffer.from(
        "POST /stream.v1.StreamService/Stream HTTP/1.1\r\nHost: a:b\r\n" +
          "Content-Type: application/connect+json\r\nContent-Length: 0\r\n\r\n",
      ),
    );
    await stillServing();
    const [res] = parseHttp1Responses(raw);
    assert.equal(res?.status, 400);
    assert.equal(assertJsonError(res.body, "HTTP/1.1").code, "invalid_argument");
    const client = new H2Client(srv.url);
    const x = await client.request({
      method: "POST",
      path: streamPath,
      headers: { ":authority": "a:b", "content-type": "application/connect+json" },
      body: envelope(Buffer.from("{}")),
    });
    client.close();
    await stillServing();
    assert.equal(x.status, 400);
    assert.equal(assertJsonError(x.body, "HTTP/2").code, "invalid_argument");
  });

  it("should answer random and mutated HTTP/1.1 requests with a status, and errors with JSON", async () => {
    await holds(
      fc.asyncProperty(http1Input, async (input) => {
        const { raw, timedOut } = await http1Raw(srv.port, input);
        await stillServing();
        assert.equal(timedOut, false, "the server neither answered nor closed");
        assertNoLeak(raw.toString("latin1"), "the answer");
        // The HTTP/2 preface, or the start of it, goes to the HTTP/2 server: no HTTP/1.1 answer.
        const n = Math.min(input.length, PREFACE.length);
        if (Buffer.from(input).subarray(0, n).equals(PREFACE.subarray(0, n))) return;
        // Bytes that start like the preface ("PRI", a method HTTP/1.1 reserves for it) and then differ
        // are an HTTP/2 client's mistake: GOAWAY PROTOCOL_ERROR, as HTTP/2 answers a bad preface.
        if (Buffer.from(input).subarray(0, 3).toString("latin1") === "PRI") {
          assert.ok(raw.equals(GOAWAY_PROTOCOL_ERROR), `not a GOAWAY PROTOCOL_ERROR: ${raw.toString("hex")}`);
          return;
        }
        // The answer to a HEAD has no body, whatever its headers announce.
        const head = Buffer.from(input).subarray(0, 5).toString("latin1") === "HEAD ";
        for (const [i, res] of parseHttp1Responses(raw).entries()) {
          if (res.status < 400 || (i === 0 && head)) continue;
          // connect-node's own protocol answers (405, 415, 505 on an RPC path) have no body.
          if (res.body.length === 0 && [405, 415, 505].includes(res.status)) continue;
          assertJsonError(res.body, `HTTP ${res.status}`);
        }
      }),
      () => srv.lines,
    );
  });

  it("should survive random HTTP/2 frames and show nothing of itself in GOAWAY or DATA", async () => {
    await holds(
      fc.asyncProperty(h2Input, async (input) => {
        const { frames } = await rawH2(srv.port, input, 500);
        await stillServing();
        for (const f of frames) {
          if (f.type === FrameType.GOAWAY) assertNoLeak(f.payload.subarray(8).toString("latin1"), "GOAWAY debug data");
          if (f.type === FrameType.DATA) assertNoLeak(f.payload.toString("latin1"), "a DATA frame");
        }
      }),
      () => srv.lines,
    );
  });

  it("should answer envelopes with lying lengths and odd flags with the right code, on gRPC, gRPC-Web and Connect", async () => {
    const roads: Road[] = ["grpc/h2", "grpc-web/h1", "connect-proto/h1", "connect-proto/h2"];
    await holds(
      fc.asyncProperty(fc.constantFrom(...roads), envelopesInput, async (road, body) => {
        const x = await call(road, body);
        await stillServing();
        assertRpcAnswer(road, x);
      }),
      () => srv.lines,
    );
  });

  it("should answer protobuf that is no StreamRequest (random, invalid UTF-8, huge varints) with the right code", async () => {
    const roads: Road[] = ["grpc/h2", "grpc-web/h1", "connect-proto/h1"];
    await holds(
      fc.asyncProperty(fc.constantFrom(...roads), protobufInput, async (road, payload) => {
        const x = await call(road, envelope(payload));
        await stillServing();
        assertRpcAnswer(road, x);
      }),
      () => srv.lines,
    );
  });

  it("should answer Connect JSON junk and deep nesting with invalid_argument or resource_exhausted", async () => {
    const roads: Road[] = ["connect-json/h1", "connect-json/h2"];
    await holds(
      fc.asyncProperty(fc.constantFrom(...roads), connectJsonInput, async (road, json) => {
        const x = await call(road, envelope(json));
        await stillServing();
        assertRpcAnswer(road, x);
      }),
      () => srv.lines,
    );
  });

  it("should answer any query string on GET /stream over HTTP/1.1 with a stream, 204, or a JSON error", async () => {
    await holds(
      fc.asyncProperty(queryInput, async (q) => {
        const head =
          `GET ${queryPath(q)} HTTP/1.1\r\nHost: localhost\r\n` +
          (q.sse ? "Accept: text/event-stream\r\n" : "") +
          (q.lastEventId !== undefined ? `Last-Event-ID: ${q.lastEventId}\r\n` : "") +
          "\r\n";
        const { raw, timedOut } = await http1Raw(srv.port, Buffer.from(head, "utf8"));
        await stillServing();
        assert.equal(timedOut, false, "the server neither answered nor closed");
        assertNoLeak(raw.toString("latin1"), "the answer");
        const [res] = parseHttp1Responses(raw);
        assert.ok(res !== undefined, "no answer");
        if (res.status === 200 || res.status === 204) return;
        assert.ok(res.status >= 400 && res.status < 500, `HTTP ${res.status}`);
        assertJsonError(res.body, `HTTP ${res.status}`);
      }),
      () => srv.lines,
    );
  });

  it("should answer any query string on GET /stream over HTTP/2 with a stream, 204, or a JSON error", async () => {
    await holds(
      fc.asyncProperty(queryInput, async (q) => {
        const path = queryPath(q);
        const headers: Record<string, string> = {};
        if (q.sse) headers.accept = "text/event-stream";
        if (q.lastEventId !== undefined) headers["last-event-id"] = q.lastEventId;
        let x: Exchange;
        try {
          x = await h2.request({ method: "GET", path, headers, enough: (b) => b.includes(0x0a) });
        } catch (e) {
          // node:http2 refuses to send a header value it deems invalid: not a case for the server.
          if (
            (e as { code?: string }).code === "ERR_INVALID_CHAR" ||
            (e as { code?: string }).code === "ERR_HTTP2_INVALID_HEADER_VALUE"
          ) {
            fc.pre(false);
          }
          throw e;
        }
        await stillServing();
        assertNoLeak(x.body.toString("utf8"), "the answer");
        if (x.status === 0) {
          // nghttp2 refuses a header list past its limit before the server sees it.
          assert.ok(path.length > 16_000, `no answer but RST_STREAM ${x.rstCode} for a ${path.length}-byte path`);
          return;
        }
        if (x.status === 200 || x.status === 204) return;
        assert.ok(x.status >= 400 && x.status < 500, `HTTP ${x.status}`);
        assertJsonError(x.body, `HTTP ${x.status}`);
      }),
      () => srv.lines,
    );
  });

  it("should have logged no internal error for any of it", () => {
    const errors = srv.lines.filter((l) => l.includes('"level":"error"'));
    assert.deepEqual(errors, []);
  });
});
