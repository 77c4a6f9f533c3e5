import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamRequest, StreamResponse } from "../gen/stream/v1/stream_pb.js";
import {
  binaryContentTypes,
  compressedFlag,
  compressedWithoutEncoding,
  compressionNegotiate,
  compressMinBytes,
  createRequestParser,
  deadlineExceeded,
  defaultAcceptCompression,
  defaultMaxTimeoutMs,
  errorFromH2ResetCode,
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
  streamPath,
  trailerOk,
} from "./connect-internals.js";
import { drainedOrClosed } from "./drain.js";
import { EnvelopeSplitter, encodeResponse, envelope } from "./grpc-envelope.js";
import { discardRestOfRequest, type StreamTaker } from "./listen.js";
import type { Logger } from "./log.js";
import { peerOf, requestIdFrom } from "./routes.js";
import type { CallInfo, StreamService } from "./stream-service.js";

// The lean path for the hot call: Stream over gRPC on HTTP/2. It takes the
// ServerHttp2Stream before Node's compat layer wraps it, reads the one request
// envelope, and writes the generator's messages straight into gRPC envelopes.
// It serves the same StreamService.open() as the connect route, so validation,
// pacing, limits, logging and metrics are the same; what it reproduces of
// connect's gRPC handler (errors, headers, trailers) comes from
// connect-internals.ts, and test/fast-path.test.ts holds both paths to the
// same bytes. Anything it does not fully understand stays with connect-node.

export interface FastPathOptions {
  streams: StreamService;
  /** connect-node's readMaxBytes: the largest request message; larger gets RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  /** connect's maxTimeoutMs: a larger grpc-timeout is INVALID_ARGUMENT. Default: connect's, no limit. */
  maxTimeoutMs?: number;
  logger: Logger;
}

/** Returns the 'stream' filter for listen(): true when the fast path took the stream. */
export function createFastPath(options: FastPathOptions): StreamTaker {
  const ctx: Context = {
    streams: options.streams,
    logger: options.logger,
    splitterMax: options.readMaxBytes,
    parse: createRequestParser(options.readMaxBytes),
    maxTimeoutMs: options.maxTimeoutMs ?? defaultMaxTimeoutMs,
  };
  return (stream, headers) => {
    if (!understood(headers)) return false;
    serve(ctx, stream, headers).catch((e: unknown) => {
      ctx.logger.error("fast path failed", { error: e instanceof Error ? e.message : String(e) });
      if (!stream.destroyed) stream.close(0x2); // INTERNAL_ERROR
    });
    return true;
  };
}

interface Context {
  streams: StreamService;
  logger: Logger;
  splitterMax: number;
  parse: (data: Uint8Array) => StreamRequest;
  maxTimeoutMs: number;
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
  const controller = new AbortController();
  let closed = false;
  let finished = false;
  let deadline: NodeJS.Timeout | undefined;
  const onClose = () => {
    closed = true;
    clearTimeout(deadline);
    // The client reset the stream or its connection went: open() must end now,
    // not at its next wake-up. A normal end aborts nothing (no DOMException).
    if (!finished && !controller.signal.aborted) {
      controller.abort(
        errorFromH2ResetCode(stream.rstCode ?? 0x8) ?? new ConnectError("http/2 stream closed", Code.Canceled),
      );
    }
  };
  stream.once("close", onClose);
  // A reset stream emits 'error'; its end is handled through 'close'.
  stream.on("error", (err) => ctx.logger.debug("fast path stream error", { error: err.message }));

  const response: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": responseContentType };
  const compression = compressionNegotiate(
    defaultAcceptCompression,
    single(headers[headerGrpcEncoding]) ?? null,
    single(headers[headerGrpcAcceptEncoding]) ?? null,
    headerGrpcAcceptEncodingCanonical,
  ).response;
  if (compression !== null) response[headerGrpcEncoding] = compression.name;
  const timeout = parseTimeout(single(headers[headerGrpcTimeout]) ?? null, ctx.maxTimeoutMs);
  const deadlineAt = timeout.timeoutMs === undefined ? undefined : performance.now() + timeout.timeoutMs;
  if (timeout.timeoutMs !== undefined) {
    // As connect's createDeadlineSignal: the clock runs from the request headers.
    if (timeout.timeoutMs <= 0) controller.abort(deadlineExceeded());
    else deadline = setTimeout(() => controller.abort(deadlineExceeded()), timeout.timeoutMs);
  }
  const end = (error: unknown) => {
    finished = true;
    clearTimeout(deadline);
    if (closed || stream.destroyed) return;
    const trailers = error === undefined ? trailerOk : trailersOf(error);
    if (!stream.headersSent) respond(stream, response);
    stream.once("wantTrailers", () => {
      if (!stream.destroyed) stream.sendTrailers(trailers);
    });
    stream.end();
    discardRestOfRequest(stream);
  };
  if (timeout.error !== undefined) return end(timeout.error);

  let request: StreamRequest;
  try {
    request = await readRequest(stream, ctx);
  } catch (e) {
    return end(e);
  }
  if (closed) return end(undefined);

  const call: CallInfo = {
    deadlineAt,
    peer: peerOf(stream.session?.socket ?? {}),
    protocol: "grpc",
    httpVersion: "2.0",
    requestId: requestIdFrom(single(headers["x-request-id"])),
  };
  response["x-request-id"] = call.requestId;
  const it = ctx.streams.open(request, call, controller.signal);
  try {
    let next = await it.next();
    if (closed || stream.destroyed) return end(undefined);
    // Headers leave with the first message (or the error), as connect sends them.
    respond(stream, response);
    // Messages produced in one turn of the event loop (interval 0) go out in one writev.
    let corked = false;
    const uncork = () => {
      corked = false;
      if (!stream.destroyed) stream.uncork();
    };
    while (next.done !== true) {
      if (closed || stream.destroyed) return end(undefined);
      const buf = compression === null ? encodeResponse(next.value) : await encode(next.value, compression);
      if (!corked) {
        corked = true;
        stream.cork();
        process.nextTick(uncork);
      }
      if (!stream.write(buf)) {
        // Pull-based: the generator stays paused until the client read what was sent.
        await drainedOrClosed(stream);
      }
      next = await it.next();
    }
  } catch (e) {
    return end(e);
  } finally {
    // Ends open() at once (its finally: registry, log, metrics) when we stop
    // early: the client went away while the generator sat at a yield.
    void it.return(undefined).catch(() => {});
  }
  end(undefined);
}

function respond(stream: http2.ServerHttp2Stream, headers: http2.OutgoingHttpHeaders): void {
  stream.respond(headers, { waitForTrailers: true });
}

function trailersOf(error: unknown): http2.OutgoingHttpHeaders {
  const err = error instanceof ConnectError ? error : internalError(error);
  const trailers: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of setTrailerStatus(new Headers(), err)) trailers[name] = value;
  return trailers;
}

/** Our messages stay far below compressMinBytes; should one ever grow, it is compressed as connect would. */
async function encode(
  msg: StreamResponse,
  compression: ReturnType<typeof compressionNegotiate>["response"],
): Promise<Buffer> {
  const buf = encodeResponse(msg);
  if (compression === null || buf.length - 5 < compressMinBytes) return buf;
  return envelope(await compression.compress(buf.subarray(5)), compressedFlag);
}

/**
 * The one request message, with connect's checks in connect's order: each
 * envelope's size as its prefix arrives, then per envelope the compressed
 * flag and the protobuf, then a second message, then the end of the body.
 */
function readRequest(stream: http2.ServerHttp2Stream, ctx: Context): Promise<StreamRequest> {
  return new Promise((resolve, reject) => {
    const splitter = new EnvelopeSplitter(ctx.splitterMax);
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
