import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { Readable } from "node:stream";
import { ConnectError } from "@connectrpc/connect";
import type { StreamRequest } from "../../../gen/stream/v1/stream_pb.js";
import type { GreetingStream, GreetingStreams } from "../../core/stream-service.js";
import { discardRestOfRequest } from "../../http/h2.js";
import { authenticate, type BearerTokens } from "../kit/auth.js";
import { createCallInfo } from "../kit/call.js";
import { GreetingWire } from "../kit/greeting-wire.js";
import { joinBuffers, WriteBatch } from "../kit/write-batch.js";
import {
  closedStreamReason,
  compressedFlag,
  compressedWithoutEncoding,
  compressionNegotiate,
  deadlineExceeded,
  defaultAcceptCompression,
  extraInput,
  internalError,
  missingInput,
  setTrailerStatus,
  trailerOk,
} from "./connect-internals.js";
import { EnvelopeSplitter } from "./envelope-splitter.js";
import type { RpcProtocol } from "./protocols.js";

// The lean RPC engine: Stream over gRPC, gRPC-Web and Connect, on HTTP/2
// streams taken before Node's compat layer and on HTTP/1.1 requests taken
// before connect-node. It reads the one request envelope, starts the stream
// in the core with a sink that encodes each message straight into its
// envelope and writes it, and ends the response the protocol's way. What it
// reproduces of connect's handlers (errors, headers, trailers, end-of-stream
// messages, the deadline) comes from connect-internals.ts, and
// test/lean-rpc.test.ts holds it to connect-node's bytes.

/** One request and its response, over HTTP/2 or HTTP/1.1: what the engine needs of either. */
export interface Exchange {
  readonly httpVersion: "2.0" | "1.1";
  readonly headers: http.IncomingHttpHeaders;
  readonly socket: { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined;
  /** The request body. */
  readonly body: Readable;
  /** What 'drain' and 'close' come from. */
  readonly out: NodeJS.EventEmitter;
  /** True once the peer went away. */
  closed(): boolean;
  /** Why the stream closed, as connect-node would tell its handler. */
  closeReason(): unknown;
  respond(headers: http.OutgoingHttpHeaders, trailersFollow: boolean): void;
  write(chunk: Buffer): boolean;
  cork(): void;
  uncork(): void;
  /** Ends the response: a last chunk, HTTP/2 trailers. */
  end(tail: Buffer | undefined, trailers: http2.OutgoingHttpHeaders | undefined): void;
}

export interface EngineContext {
  streams: GreetingStreams;
  readMaxBytes: number;
  maxTimeoutMs: number;
  parse(binary: boolean): (data: Uint8Array) => StreamRequest;
  /** Headers a browser's origin gets (CORS), added to every response. */
  corsHeaders(origin: string | undefined): Record<string, string>;
  /** With tokens, a call needs one (--auth-token-file). */
  tokens: BearerTokens | undefined;
}

export async function serveRpc(ctx: EngineContext, x: Exchange, protocol: RpcProtocol): Promise<void> {
  const headers = x.headers;
  const response: http.OutgoingHttpHeaders = { "content-type": protocol.contentType };
  const compression = compressionNegotiate(
    defaultAcceptCompression,
    single(headers[protocol.encodingHeader]) ?? null,
    single(headers[protocol.acceptEncodingHeader]) ?? null,
    protocol.acceptEncodingCanonical,
  ).response;
  // Named in the headers as connect does; a message is never compressed, being
  // always smaller than connect's compressMinBytes (test/connect-internals.test.ts).
  if (compression !== null) response[protocol.encodingHeader] = compression.name;
  Object.assign(response, ctx.corsHeaders(single(headers.origin)));

  let opened = false;
  let finished = false;
  let stream: GreetingStream | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const open = () => {
    opened = true;
    x.respond(response, protocol.httpTrailers);
  };
  const end = (error: unknown) => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    x.out.off("close", onClose);
    x.out.off("drain", onDrain);
    if (x.closed()) return;
    const err = error === undefined ? undefined : error instanceof ConnectError ? error : internalError(error);
    if (!opened) open();
    x.end(protocol.tail(err), protocol.httpTrailers ? trailersOf(err) : undefined);
  };
  const onClose = () => {
    clearTimeout(deadline);
    stream?.cancel(x.closeReason());
  };
  const onDrain = () => stream?.resume();
  x.out.on("close", onClose);

  const timeout = protocol.parseTimeout(single(headers[protocol.timeoutHeader]) ?? null, ctx.maxTimeoutMs);
  if (timeout.error !== undefined) return end(timeout.error);
  // As connect's createHandlerContext: the clock runs from the request headers, not from the body.
  let expired = false;
  if (timeout.timeoutMs !== undefined) {
    if (timeout.timeoutMs <= 0) expired = true;
    else {
      deadline = setTimeout(() => {
        expired = true;
        if (stream === undefined) end(deadlineExceeded());
        else stream.fail(deadlineExceeded());
      }, timeout.timeoutMs);
    }
  }

  const call = createCallInfo({
    socket: x.socket,
    protocol: protocol.name,
    httpVersion: x.httpVersion,
    requestIdHeader: single(headers["x-request-id"]),
    timeoutMs: timeout.timeoutMs,
    traceparent: single(headers.traceparent),
    tracestate: single(headers.tracestate),
  });
  // Before the body is read, where connect-node's interceptor checks too.
  const denied = authenticate(ctx.tokens, { authorization: single(headers.authorization) });
  if (denied !== undefined) {
    ctx.streams.refuse(call, "", denied.error);
    return end(denied.error);
  }

  let request: StreamRequest;
  try {
    request = await readRequest(x, ctx, protocol);
  } catch (e) {
    return end(e);
  }
  if (finished) return;
  if (x.closed()) return end(undefined);

  response["x-request-id"] = call.requestId;
  // What one turn of the event loop writes (interval 0) goes out in one writev.
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!x.closed()) x.uncork();
  };
  let wire: GreetingWire | undefined;
  const batch = new WriteBatch<Buffer>((chunk) => {
    if (x.closed()) return false;
    if (!corked) {
      corked = true;
      x.cork();
      process.nextTick(uncork);
    }
    return x.write(chunk);
  }, joinBuffers);
  try {
    stream = ctx.streams.start(request, call, {
      write(counter, millis) {
        if (x.closed()) return false;
        // The headers leave with the first message, never before.
        if (!opened) open();
        return batch.add(protocol.encode(wire as GreetingWire, counter, millis));
      },
      flush: () => batch.flush(),
      end(error) {
        batch.flush();
        end(error);
      },
    });
  } catch (e) {
    return end(e);
  }
  wire = new GreetingWire(stream.name);
  x.out.on("drain", onDrain);
  // A deadline that passed with the headers still gets its stream opened and ended, as connect's handler does.
  if (expired) stream.fail(deadlineExceeded());
  else stream.begin();
}

function trailersOf(error: ConnectError | undefined): http2.OutgoingHttpHeaders {
  if (error === undefined) return trailerOk;
  const trailers: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of setTrailerStatus(new Headers(), error)) trailers[name] = value;
  return trailers;
}

/**
 * The one request message, with connect's checks in connect's order: each
 * envelope's size as its prefix arrives, then per envelope the compressed
 * flag, the protocol's end flag (skipped) and the message, then a second
 * message, then the end of the body.
 */
function readRequest(x: Exchange, ctx: EngineContext, protocol: RpcProtocol): Promise<StreamRequest> {
  const parse = ctx.parse(protocol.binary);
  const body = x.body;
  return new Promise((resolve, reject) => {
    const splitter = new EnvelopeSplitter(ctx.readMaxBytes);
    let first: StreamRequest | undefined;
    const stop = () => {
      body.off("data", onData);
      body.off("end", onEnd);
      x.out.off("close", onEnd);
    };
    const fail = (e: unknown) => {
      stop();
      reject(e);
    };
    const onData = (chunk: Buffer) => {
      try {
        for (const env of splitter.push(chunk)) {
          if ((env.flags & compressedFlag) === compressedFlag) throw compressedWithoutEncoding();
          if (protocol.skipFlag !== 0 && (env.flags & protocol.skipFlag) === protocol.skipFlag) continue;
          const msg = parse(env.data);
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
    body.on("data", onData);
    body.once("end", onEnd);
    x.out.once("close", onEnd);
  });
}

/** An HTTP/2 stream as an Exchange. */
export function h2Exchange(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Exchange {
  // A reset stream emits 'error'; its end is handled through 'close'.
  stream.on("error", () => {});
  return {
    httpVersion: "2.0",
    headers,
    socket: stream.session?.socket,
    body: stream,
    out: stream,
    closed: () => stream.destroyed || stream.closed,
    closeReason: () => closedStreamReason(stream.rstCode ?? 0x8),
    respond(h, trailersFollow) {
      stream.respond({ ":status": 200, ...h }, { waitForTrailers: trailersFollow });
    },
    write: (chunk) => stream.write(chunk),
    cork: () => stream.cork(),
    uncork: () => stream.uncork(),
    end(tail, trailers) {
      if (trailers !== undefined) {
        stream.once("wantTrailers", () => {
          if (!stream.destroyed) stream.sendTrailers(trailers);
        });
      }
      if (tail === undefined) stream.end();
      else stream.end(tail);
      discardRestOfRequest(stream);
    },
  };
}

/** An HTTP/1.1 request and its response as an Exchange. */
export function h1Exchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
  let closed = false;
  res.once("close", () => {
    closed = true;
  });
  return {
    httpVersion: "1.1",
    headers: req.headers,
    socket: req.socket,
    body: req,
    out: res,
    closed: () => closed || res.destroyed,
    // As connect-node's onH1Close: the request's error when there was one, else a plain AbortError.
    closeReason: () => new DOMException("This operation was aborted", "AbortError"),
    respond(h) {
      res.writeHead(200, h);
    },
    write: (chunk) => res.write(chunk),
    // A response corks its socket for each chunk itself (chunked encoding writes three pieces).
    cork: () => {},
    uncork: () => {},
    end(tail) {
      if (tail === undefined) res.end();
      else res.end(tail);
      // The rest of a body nobody reads would otherwise hold the connection.
      req.resume();
    },
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
