import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { ConnectError, createConnectRouter } from "@connectrpc/connect";
import { createMethodUrl, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  headerEncoding,
  headerTimeout,
  parseContentType,
} from "@connectrpc/connect/protocol-grpc";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import {
  binaryContentTypes,
  closedStreamReason,
  compressedWithoutEncoding,
  compressMinBytes,
  createRequestParser,
  deadlineExceeded,
  defaultAcceptCompression,
  defaultMaxTimeoutMs,
  envelopeTooLarge,
  errorFromH2ResetCode,
  extraInput,
  headerGrpcAcceptEncoding,
  headerGrpcAcceptEncodingCanonical,
  headerGrpcEncoding,
  headerGrpcTimeout,
  incompleteEnvelope,
  internalError,
  missingInput,
  parseTimeout,
  responseContentType,
  setTrailerStatus,
  streamPath,
  trailerOk,
} from "../src/connect-internals/protocol.js";
import { MAX_COUNTER, MAX_NAME_LENGTH } from "../src/core/greeting.js";
import type { GreetingStreams } from "../src/core/stream-service.js";
import { GreetingWire } from "../src/entries/kit/greeting-wire.js";
import { eventually, startServer, type TestServer } from "./support/server.js";
import { envelope, grpcRequestHeaders, requestEnvelope } from "./support/wire.js";

// What src/connect-internals.ts claims about connect-es, held against
// connect-es itself: its gRPC handler is run in memory on the same inputs,
// and its trailers must be what the fast path would send. When an upgrade of
// @connectrpc/connect or -node changes any of it, this fails, and the fast
// path must follow before the pin moves.

const readMaxBytes = 4096;

/** Runs connect's own gRPC handler for Stream and returns the trailers it ends with. */
async function connectTrailers(
  body: Uint8Array,
  headers: Record<string, string> = {},
  impl: (signal: AbortSignal) => AsyncIterable<never> = () => ending(() => {}),
): Promise<Record<string, string>> {
  const router = createConnectRouter({ readMaxBytes });
  router.service(StreamService, { stream: (_req, ctx) => impl(ctx.signal) });
  const handler = router.handlers.find((h) => h.requestPath === streamPath);
  assert.ok(handler, "connect routes Stream on streamPath");
  const res = await handler({
    httpVersion: "2.0",
    method: "POST",
    url: `http://127.0.0.1${streamPath}`,
    header: new Headers({ "content-type": "application/grpc", ...headers }),
    body: (async function* () {
      yield body;
    })(),
    signal: new AbortController().signal,
  });
  assert.equal(res.status, 200);
  if (res.body !== undefined && Symbol.asyncIterator in res.body) {
    for await (const _ of res.body) {
    }
  }
  return Object.fromEntries(res.trailer ?? []);
}

/** A response stream without messages: it runs `check` on the first pull, then ends. */
function ending(check: () => void): AsyncIterable<never> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        check();
        return { done: true, value: undefined };
      },
    }),
  };
}

/** The trailers the fast path sends for an error. */
function ours(error: ConnectError): Record<string, string> {
  return Object.fromEntries(setTrailerStatus(new Headers(), error));
}

describe("connect-internals", () => {
  it("should name the path, content types and header names as connect does", () => {
    assert.equal(streamPath, createMethodUrl("/", StreamService.method.stream));
    for (const t of binaryContentTypes) assert.deepEqual(parseContentType(t), { binary: true });
    assert.equal(responseContentType, contentTypeProto);
    assert.equal(headerGrpcEncoding, headerEncoding.toLowerCase());
    assert.equal(headerGrpcAcceptEncoding, headerAcceptEncoding.toLowerCase());
    assert.equal(headerGrpcAcceptEncodingCanonical, headerAcceptEncoding);
    assert.equal(headerGrpcTimeout, headerTimeout.toLowerCase());
    assert.deepEqual(trailerOk, { "grpc-status": grpcStatusOk });
    assert.deepEqual(
      defaultAcceptCompression.map((c) => c.name),
      ["gzip", "br"],
    );
  });

  it("should name connect's handler defaults: compressMinBytes and maxTimeoutMs", () => {
    const defaults = validateUniversalHandlerOptions(undefined);
    assert.equal(compressMinBytes, defaults.compressMinBytes);
    assert.equal(defaultMaxTimeoutMs, defaults.maxTimeoutMs);
  });

  it("should never need compression: the largest greeting stays below compressMinBytes", () => {
    // 100 code points of 4 UTF-8 bytes each, the largest counter, a timestamp with every field.
    const name = "\u{1F600}".repeat(MAX_NAME_LENGTH);
    const wire = new GreetingWire(name);
    const largest = Math.max(
      wire.envelope(MAX_COUNTER, 2 ** 45 + 999).length - 5,
      Buffer.byteLength(wire.json(MAX_COUNTER, 2 ** 45 + 999)),
    );
    assert.ok(largest < compressMinBytes, `${largest} bytes`);
  });

  it("should send OK trailers as connect does", async () => {
    const body = requestEnvelope({ limit: 1n });
    assert.deepEqual(await connectTrailers(body), { ...trailerOk });
  });

  describe("errors of the request body", () => {
    const cases: [string, Uint8Array, ConnectError][] = [
      [
        "an oversize envelope",
        envelope(Buffer.alloc(0), 0, readMaxBytes + 1),
        envelopeTooLarge(readMaxBytes + 1, readMaxBytes),
      ],
      ["a truncated envelope", Buffer.from([0, 0, 0]), incompleteEnvelope()],
      ["a compressed envelope", envelope(Buffer.alloc(0), 1), compressedWithoutEncoding()],
      ["an empty body", Buffer.alloc(0), missingInput()],
      ["two envelopes", Buffer.concat([envelope(Buffer.alloc(0)), envelope(Buffer.alloc(0))]), extraInput()],
    ];
    for (const [name, body, error] of cases) {
      it(`should fail ${name} as connect does`, async () => {
        assert.deepEqual(ours(error), await connectTrailers(body));
      });
    }

    it("should fail malformed protobuf with connect's parser error", async () => {
      const bad = Buffer.from([0x0a, 0x7f, 0x41]);
      let error: ConnectError | undefined;
      try {
        createRequestParser(readMaxBytes)(bad);
      } catch (e) {
        error = e as ConnectError;
      }
      assert.ok(error);
      assert.deepEqual(ours(error), await connectTrailers(envelope(bad)));
    });
  });

  describe("grpc-timeout", () => {
    for (const value of ["1x", "123456789S", "-1S", "1.5S"]) {
      it(`should reject ${JSON.stringify(value)} as connect does`, async () => {
        const parsed = parseTimeout(value, Number.MAX_SAFE_INTEGER);
        assert.ok(parsed.error);
        assert.deepEqual(ours(parsed.error), await connectTrailers(Buffer.alloc(0), { "grpc-timeout": value }));
      });
    }

    it("should end a call past its deadline as connect does", async () => {
      const body = requestEnvelope({});
      const trailers = await connectTrailers(body, { "grpc-timeout": "0m" }, (signal) =>
        ending(() => {
          if (signal.aborted) throw signal.reason;
        }),
      );
      assert.deepEqual(ours(deadlineExceeded()), trailers);
    });
  });

  it("should hide an unknown error behind connect's internal error", async () => {
    const body = requestEnvelope({});
    const trailers = await connectTrailers(body, {}, () =>
      ending(() => {
        throw new Error("secret");
      }),
    );
    assert.deepEqual(ours(internalError(new Error("secret"))), trailers);
  });

  it("should map RST_STREAM codes as connect-node does", async () => {
    // node-error.js is not exported by connect-node; load it by its file next to the package entry.
    const entry = createRequire(import.meta.url).resolve("@connectrpc/connect-node");
    const nodeError = (await import(pathToFileURL(join(dirname(entry), "node-error.js")).href)) as {
      connectErrorFromH2ResetCode(code: number): ConnectError | undefined;
    };
    for (let code = 0; code <= 0xe; code++) {
      const theirs = nodeError.connectErrorFromH2ResetCode(code);
      const mine = errorFromH2ResetCode(code);
      assert.deepEqual([mine?.code, mine?.rawMessage], [theirs?.code, theirs?.rawMessage], `RST code ${code}`);
    }
  });

  describe("as connect-node behaves on a real socket", () => {
    let on: TestServer;
    let off: TestServer;
    before(async () => {
      [on, off] = await Promise.all([startServer({ fastPath: true }), startServer({ fastPath: false })]);
    });
    after(async () => {
      await Promise.all([on.close(), off.close()]);
    });

    /** Holds every stream's first message back until `firstMessage` resolves, on either road. */
    function holdFirstMessage(srv: TestServer, firstMessage: Promise<void>) {
      const streams = srv.server.streams;
      const start = streams.start.bind(streams);
      let started = 0;
      streams.start = (admission, sink) => {
        const s = start(admission, sink);
        started++;
        const begin = s.begin.bind(s);
        s.begin = () => void firstMessage.then(begin);
        return s;
      };
      return {
        started: () => started,
        restore: () => delete (streams as Partial<GreetingStreams>).start,
      };
    }

    /** Records why each stream was cancelled: on connect-node's road, the reason of the signal it hands the handler. */
    function recordCancels(srv: TestServer) {
      const streams = srv.server.streams;
      const start = streams.start.bind(streams);
      const reasons: unknown[] = [];
      streams.start = (admission, sink) => {
        const s = start(admission, sink);
        const cancel = s.cancel.bind(s);
        s.cancel = (reason) => {
          reasons.push(reason);
          cancel(reason);
        };
        return s;
      };
      return { reasons, restore: () => delete (streams as Partial<GreetingStreams>).start };
    }

    function call(url: string, headers: Record<string, string> = {}) {
      const session = http2.connect(url);
      session.on("error", () => {});
      const req = session.request(grpcRequestHeaders(headers));
      req.on("error", () => {});
      let responded: number | undefined;
      let trailersAt: number | undefined;
      let trailers: http2.IncomingHttpHeaders | undefined;
      req.on("response", () => {
        responded = performance.now();
      });
      req.on("trailers", (t) => {
        trailersAt = performance.now();
        trailers = t;
      });
      req.resume();
      return {
        req,
        session,
        get responded() {
          return responded;
        },
        get trailersAt() {
          return trailersAt;
        },
        get trailers() {
          return trailers;
        },
      };
    }

    for (const [road, srv] of [
      ["the lean path", () => on],
      ["connect-node", () => off],
    ] as const) {
      it(`should send the response headers with the first message, not before (${road})`, async () => {
        let release = () => {};
        const first = new Promise<void>((resolve) => {
          release = resolve;
        });
        const i = holdFirstMessage(srv(), first);
        try {
          const c = call(srv().url);
          c.req.end(requestEnvelope({ limit: 1n }));
          await eventually(() => i.started() === 1, 2000, "the call to start its stream");
          await new Promise((resolve) => setTimeout(resolve, 150));
          assert.equal(c.responded, undefined, "headers left before the first message");
          release();
          await eventually(() => c.trailers !== undefined, 2000, "the call to end");
          assert.equal(c.trailers?.["grpc-status"], "0");
          c.session.close();
        } finally {
          release();
          i.restore();
        }
      });

      it(`should start the deadline clock at the request headers, not at the body (${road})`, async () => {
        const c = call(srv().url, { "grpc-timeout": "300m" });
        const sent = performance.now();
        // The body comes 200 ms after the headers: the deadline still passes 300 ms after the headers.
        await new Promise((resolve) => setTimeout(resolve, 200));
        c.req.end(requestEnvelope({ interval: { seconds: 3600n, nanos: 0 } }));
        await eventually(() => c.trailers !== undefined, 3000, "the deadline");
        const took = (c.trailersAt ?? 0) - sent;
        assert.equal(c.trailers?.["grpc-status"], "4");
        assert.ok(took >= 290 && took < 450, `the call ended ${took.toFixed(0)} ms after its headers`);
        c.session.close();
      });
    }

    for (const [name, rstCode] of [
      ["NO_ERROR", http2.constants.NGHTTP2_NO_ERROR],
      ["CANCEL", http2.constants.NGHTTP2_CANCEL],
      ["INTERNAL_ERROR", http2.constants.NGHTTP2_INTERNAL_ERROR],
      ["ENHANCE_YOUR_CALM", http2.constants.NGHTTP2_ENHANCE_YOUR_CALM],
    ] as const) {
      it(`should abort the call's signal with connect-node's reason for a client reset with ${name}`, async () => {
        const i = recordCancels(off);
        try {
          const c = call(off.url);
          c.req.end(requestEnvelope({ interval: { seconds: 3600n, nanos: 0 } }));
          await eventually(() => c.responded !== undefined, 2000, "the first message");
          c.req.close(rstCode);
          await eventually(() => i.reasons.length > 0, 2000, "the signal to abort");
          const theirs = i.reasons[0];
          const mine = closedStreamReason(rstCode);
          const shape = (r: unknown) => [(r as Error).name, ConnectError.from(r).code, ConnectError.from(r).rawMessage];
          assert.deepEqual(shape(mine), shape(theirs));
          c.session.close();
        } finally {
          i.restore();
        }
      });
    }
  });
});
