import type * as http2 from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import type { StreamRequest } from "../../../gen/stream/v1/stream_pb.js";
import type { GreetingStreams } from "../../core/stream-service.js";
import { discardRestOfRequest, type StreamTaker } from "../../http/h2.js";
import type { Logger } from "../../ops/log.js";
import { abortOnClose } from "../kit/abort-on-close.js";
import { authenticate, type BearerTokens } from "../kit/auth.js";
import { createCallInfo } from "../kit/call.js";
import { pump } from "../kit/pump.js";
import {
  binaryContentTypes,
  closedStreamReason,
  compressedFlag,
  compressedWithoutEncoding,
  compressionNegotiate,
  createRequestParser,
  defaultAcceptCompression,
  defaultMaxTimeoutMs,
  extraInput,
  headerGrpcAcceptEncoding,
  headerGrpcAcceptEncodingCanonical,
  headerGrpcEncoding,
  headerGrpcTimeout,
  internalError,
  missingInput,
  parseTimeout,
  responseContentType,
  setTrailerStatus,
  startDeadline,
  streamPath,
  trailerOk,
} from "./connect-internals.js";
import { EnvelopeSplitter, encodeResponse } from "./grpc-envelope.js";

// The gRPC lean path: Stream over gRPC on HTTP/2. It takes the
// ServerHttp2Stream before Node's compat layer wraps it, reads the one request
// envelope, and writes the generator's messages straight into gRPC envelopes.
// It serves the same GreetingStreams.open() as the connect-node road, so
// validation, pacing, limits, fairness, logs and metrics are the same; what
// it reproduces of connect's gRPC handler (errors, headers, trailers, the
// deadline) comes from connect-internals.ts, and test/fast-path.test.ts holds
// both roads to the same bytes. Anything it does not fully understand stays
// with connect-node.

export interface FastPathOptions {
  streams: GreetingStreams;
  /** connect-node's readMaxBytes: the largest request message; larger gets RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  /** connect's maxTimeoutMs: a larger grpc-timeout is INVALID_ARGUMENT. Default: connect's, no limit. */
  maxTimeoutMs?: number;
  /** With tokens, a call needs one in its Authorization header, else UNAUTHENTICATED. Default none: open. */
  tokens?: BearerTokens | undefined;
  logger: Logger;
}

/** Returns the 'stream' filter for listen(): true when the lean path took the stream. */
export function createFastPath(options: FastPathOptions): StreamTaker {
  const ctx: Context = {
    streams: options.streams,
    readMaxBytes: options.readMaxBytes,
    parse: createRequestParser(options.readMaxBytes),
    maxTimeoutMs: options.maxTimeoutMs ?? defaultMaxTimeoutMs,
    tokens: options.tokens,
  };
  return (stream, headers) => {
    if (!understood(headers)) return false;
    serve(ctx, stream, headers).catch((e: unknown) => {
      options.logger.error("fast path failed", { error: e instanceof Error ? e.message : String(e) });
      if (!stream.destroyed) stream.close(0x2); // INTERNAL_ERROR
    });
    return true;
  };
}

interface Context {
  streams: GreetingStreams;
  readMaxBytes: number;
  parse: (data: Uint8Array) => StreamRequest;
  maxTimeoutMs: number;
  tokens: BearerTokens | undefined;
}

/**
 * Only plain binary gRPC for Stream: POST to its path, no query, content-type
 * application/grpc or +proto as clients spell it, an uncompressed request, no
 * Expect (compat answers 100-continue), no Origin (CORS is the compat handler's).
 */
function understood(headers: http2.IncomingHttpHeaders): boolean {
  const encoding = headers[headerGrpcEncoding];
  const contentType = headers["content-type"];
  return (
    headers[":method"] === "POST" &&
    headers[":path"] === streamPath &&
    typeof contentType === "string" &&
    binaryContentTypes.includes(contentType) &&
    (encoding === undefined || encoding === "identity") &&
    headers.expect === undefined &&
    headers.origin === undefined
  );
}

async function serve(ctx: Context, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
  const abort = abortOnClose(stream, () => closedStreamReason(stream.rstCode ?? 0x8));
  // A reset stream emits 'error'; its end is handled through 'close'.
  stream.on("error", () => {});
  const response: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": responseContentType };
  const compression = compressionNegotiate(
    defaultAcceptCompression,
    single(headers[headerGrpcEncoding]) ?? null,
    single(headers[headerGrpcAcceptEncoding]) ?? null,
    headerGrpcAcceptEncodingCanonical,
  ).response;
  // Named in the headers as connect does; a message is never compressed, being
  // always smaller than connect's compressMinBytes (test/grpc-envelope.test.ts).
  if (compression !== null) response[headerGrpcEncoding] = compression.name;
  const timeout = parseTimeout(single(headers[headerGrpcTimeout]) ?? null, ctx.maxTimeoutMs);
  const deadline = startDeadline(timeout.timeoutMs);
  const onDeadline = () => abort.abort(deadline.signal.reason);
  deadline.signal.addEventListener("abort", onDeadline);
  if (deadline.signal.aborted) onDeadline();

  const end = (error: unknown) => {
    abort.finish();
    deadline.cleanup();
    deadline.signal.removeEventListener("abort", onDeadline);
    if (abort.closed || stream.destroyed) return;
    const trailers = error === undefined ? trailerOk : trailersOf(error);
    if (!stream.headersSent) stream.respond(response, { waitForTrailers: true });
    stream.once("wantTrailers", () => {
      if (!stream.destroyed) stream.sendTrailers(trailers);
    });
    stream.end();
    discardRestOfRequest(stream);
  };
  if (timeout.error !== undefined) return end(timeout.error);

  const call = createCallInfo({
    socket: stream.session?.socket,
    protocol: "grpc",
    httpVersion: "2.0",
    requestIdHeader: single(headers["x-request-id"]),
    timeoutMs: timeout.timeoutMs,
  });
  // Before the body is read, where connect-node's interceptor checks too.
  const denied = authenticate(ctx.tokens, { authorization: single(headers.authorization) });
  if (denied !== undefined) {
    ctx.streams.refuse(call, "", denied.error);
    return end(denied.error);
  }

  let request: StreamRequest;
  try {
    request = await readRequest(stream, ctx);
  } catch (e) {
    return end(e);
  }
  if (abort.closed) return end(undefined);

  response["x-request-id"] = call.requestId;
  // Messages produced in one turn of the event loop (interval 0) go out in one writev.
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!stream.destroyed) stream.uncork();
  };
  const result = await pump(ctx.streams.open(request, call, abort.signal), {
    socket: stream,
    gone: () => abort.closed || stream.destroyed,
    open: () => stream.respond(response, { waitForTrailers: true }),
    write(message) {
      if (!corked) {
        corked = true;
        stream.cork();
        process.nextTick(uncork);
      }
      return stream.write(encodeResponse(message));
    },
  });
  end(result.kind === "failed" ? result.error : undefined);
}

function trailersOf(error: unknown): http2.OutgoingHttpHeaders {
  const err = error instanceof ConnectError ? error : internalError(error);
  const trailers: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of setTrailerStatus(new Headers(), err)) trailers[name] = value;
  return trailers;
}

/**
 * The one request message, with connect's checks in connect's order: each
 * envelope's size as its prefix arrives, then per envelope the compressed
 * flag and the protobuf, then a second message, then the end of the body.
 */
function readRequest(stream: http2.ServerHttp2Stream, ctx: Context): Promise<StreamRequest> {
  return new Promise((resolve, reject) => {
    const splitter = new EnvelopeSplitter(ctx.readMaxBytes);
    let first: StreamRequest | undefined;
    const stop = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
    };
    const fail = (e: unknown) => {
      stop();
      reject(e);
    };
    const onData = (chunk: Buffer) => {
      try {
        for (const env of splitter.push(chunk)) {
          if ((env.flags & compressedFlag) === compressedFlag) throw compressedWithoutEncoding();
          const msg = ctx.parse(env.data);
          if (first !== undefined) throw extraInput();
          first = msg;
        }
      } catch (e) {
        fail(e);
      }
    };
    const onEnd = () => {
      stop();
      try {
        splitter.end();
        if (first === undefined) throw missingInput();
        resolve(first);
      } catch (e) {
        reject(e);
      }
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onEnd);
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
