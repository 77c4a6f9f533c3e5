import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { type ConnectError, createConnectRouter } from "@connectrpc/connect";
import { createMethodUrl } from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  headerEncoding,
  headerTimeout,
  parseContentType,
} from "@connectrpc/connect/protocol-grpc";
import { StreamRequestSchema, StreamService } from "../gen/stream/v1/stream_pb.js";
import {
  binaryContentTypes,
  compressedWithoutEncoding,
  createRequestParser,
  deadlineExceeded,
  defaultAcceptCompression,
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
} from "../src/connect-internals.js";
import { envelopeOf } from "./support/h2-grpc.js";

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

  it("should send OK trailers as connect does", async () => {
    const body = envelopeOf(toBinary(StreamRequestSchema, create(StreamRequestSchema, { limit: 1n })));
    assert.deepEqual(await connectTrailers(body), { ...trailerOk });
  });

  describe("errors of the request body", () => {
    const cases: [string, Uint8Array, ConnectError][] = [
      [
        "an oversize envelope",
        envelopeOf(Buffer.alloc(0), 0, readMaxBytes + 1),
        envelopeTooLarge(readMaxBytes + 1, readMaxBytes),
      ],
      ["a truncated envelope", Buffer.from([0, 0, 0]), incompleteEnvelope()],
      ["a compressed envelope", envelopeOf(Buffer.alloc(0), 1), compressedWithoutEncoding()],
      ["an empty body", Buffer.alloc(0), missingInput()],
      ["two envelopes", Buffer.concat([envelopeOf(Buffer.alloc(0)), envelopeOf(Buffer.alloc(0))]), extraInput()],
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
      assert.deepEqual(ours(error), await connectTrailers(envelopeOf(bad)));
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
      const body = envelopeOf(toBinary(StreamRequestSchema, create(StreamRequestSchema, {})));
      const trailers = await connectTrailers(body, { "grpc-timeout": "0m" }, (signal) =>
        ending(() => {
          if (signal.aborted) throw signal.reason;
        }),
      );
      assert.deepEqual(ours(deadlineExceeded()), trailers);
    });
  });

  it("should hide an unknown error behind connect's internal error", async () => {
    const body = envelopeOf(toBinary(StreamRequestSchema, create(StreamRequestSchema, {})));
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
});
