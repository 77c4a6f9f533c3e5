import type * as http from "node:http";
import type * as http2 from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import type { StreamRequest } from "../../../gen/stream/v1/stream_pb.js";
import {
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
} from "../../connect-internals/protocol.js";
import type { GreetingSink, GreetingStream, GreetingStreams } from "../../core/stream-service.js";
import type { Exchange } from "../../http/exchange.js";
import { connectEnvelopeProblem } from "../kit/envelope-check.js";
import { GreetingWire } from "../kit/greeting-wire.js";
import { WriteBatch } from "../kit/write-batch.js";
import { Base64Reader, base64Chunk } from "./base64-text.js";
import { EnvelopeSplitter } from "./envelope-splitter.js";
import type { RpcProtocol } from "./protocols.js";
import { type RpcWire, rpcWireOf } from "./rpc-wire.js";

// The lean RPC engine: Stream over gRPC, gRPC-Web and Connect, on HTTP/2
// streams taken before Node's compat layer and on HTTP/1.1 requests taken
// before connect-node. It reads the one request envelope, admits it in the
// core, starts it with a sink that encodes each message straight into its
// envelope and writes it, and ends the response the protocol's way. The
// front door has checked the token and read the deadline. What it reproduces
// of connect's handlers (errors, headers, trailers, end-of-stream messages)
// comes from connect-internals/, and test/lean-rpc.test.ts holds it to
// connect-node's bytes.

export interface EngineContext {
  streams: GreetingStreams;
  readMaxBytes: number;
  parse(binary: boolean): (data: Buffer) => StreamRequest;
}

/** One call on the lean road, from its request to its last frame. */
export class LeanCall {
  private readonly wire: RpcWire;
  private readonly headers: http.OutgoingHttpHeaders;
  private opened = false;
  private finished = false;
  private stream: GreetingStream | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private expired = false;

  constructor(
    private readonly ctx: EngineContext,
    private readonly x: Exchange,
    private readonly protocol: RpcProtocol,
  ) {
    this.wire = rpcWireOf(x);
    this.headers = responseHeaders(x, protocol);
  }

  /** Reads the request, admits it and streams it. */
  async serve(): Promise<void> {
    this.wire.out.on("close", this.onClose);
    this.armDeadline();
    let request: StreamRequest;
    try {
      request = await readRequest(this.wire, this.ctx, this.protocol);
    } catch (e) {
      return this.end(e);
    }
    if (this.finished) return;
    if (this.wire.closed()) return this.end(undefined);
    let stream: GreetingStream;
    try {
      const admission = this.ctx.streams.admit(request, this.x.call);
      stream = this.ctx.streams.start(admission, this.sink(new GreetingWire(admission.plan.name)));
    } catch (e) {
      return this.end(e);
    }
    this.stream = stream;
    this.wire.out.on("drain", this.onDrain);
    // A deadline that passed with the headers still gets its stream opened and ended, as connect's handler does.
    if (this.expired) stream.fail(deadlineExceeded());
    else stream.begin();
  }

  /** Ends the response: with `error` in the protocol's shape, or OK. */
  end(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.deadline);
    this.wire.out.off("close", this.onClose);
    this.wire.out.off("drain", this.onDrain);
    if (this.wire.closed()) return;
    const err = error === undefined ? undefined : error instanceof ConnectError ? error : internalError(error);
    this.open();
    const tail = this.protocol.tail(err);
    this.wire.end(
      tail !== undefined && this.protocol.text ? base64Chunk(tail) : tail,
      this.protocol.httpTrailers ? trailersOf(err) : undefined,
    );
  }

  /** As connect's createHandlerContext: the clock runs from the request headers, which the front door read. */
  private armDeadline(): void {
    const ms = this.x.timeoutMs;
    if (ms === undefined) return;
    if (ms <= 0) {
      this.expired = true;
      return;
    }
    this.deadline = setTimeout(() => {
      this.expired = true;
      if (this.stream === undefined) this.end(deadlineExceeded());
      else this.stream.fail(deadlineExceeded());
    }, ms);
  }

  private readonly onClose = () => {
    clearTimeout(this.deadline);
    this.stream?.cancel(this.wire.closeReason());
  };

  private readonly onDrain = () => this.stream?.resume();

  private sink(greeting: GreetingWire): GreetingSink {
    return new LeanSink(this, this.wire, this.protocol, greeting);
  }

  /** The peer took nothing for --send-timeout: no last words, the stream (or its connection) goes. */
  abort(): boolean {
    this.finished = true;
    clearTimeout(this.deadline);
    return this.wire.abort();
  }

  /** The headers leave with the first message, never before. */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    this.wire.respond(this.headers, this.protocol.httpTrailers);
  }
}

/** The stream's messages into the call's wire, in the protocol's framing, batched. */
class LeanSink implements GreetingSink {
  private readonly batch: WriteBatch;
  /** What one turn of the event loop writes (interval 0) goes out in one writev. */
  private corked = false;

  constructor(
    private readonly call: LeanCall,
    private readonly wire: RpcWire,
    private readonly protocol: RpcProtocol,
    private readonly greeting: GreetingWire,
  ) {
    this.batch = new WriteBatch((chunk) => this.send(chunk));
  }

  write(counter: bigint, millis: number): boolean {
    if (this.wire.closed()) return false;
    this.call.open();
    const batch = this.batch;
    return batch.commit(this.protocol.encode(this.greeting, batch.room(), batch.used, counter, millis));
  }

  flush(): boolean {
    return this.batch.flush();
  }

  end(error: ConnectError | undefined): void {
    this.batch.flush();
    this.call.end(error);
  }

  abort(): boolean {
    return this.call.abort();
  }

  private send(chunk: Buffer): boolean {
    const wire = this.wire;
    if (wire.closed()) return false;
    if (!this.corked) {
      this.corked = true;
      wire.cork();
      process.nextTick(uncorkSink, this);
    }
    return wire.write(this.protocol.text ? base64Chunk(chunk) : chunk);
  }

  uncork(): void {
    this.corked = false;
    if (!this.wire.closed()) this.wire.uncork();
  }
}

function uncorkSink(sink: LeanSink): void {
  sink.uncork();
}

/** The response headers of every answer: the protocol's, then the front door's (CORS, request id, a challenge). */
function responseHeaders(x: Exchange, protocol: RpcProtocol): http.OutgoingHttpHeaders {
  const headers = x.head.headers;
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
  return Object.assign(response, x.responseHeaders);
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
function readRequest(wire: RpcWire, ctx: EngineContext, protocol: RpcProtocol): Promise<StreamRequest> {
  const parse = ctx.parse(protocol.binary);
  const body = wire.body;
  const text = protocol.text ? new Base64Reader() : undefined;
  return new Promise((resolve, reject) => {
    const splitter = new EnvelopeSplitter(
      ctx.readMaxBytes,
      protocol.name === "connect" ? connectEnvelopeProblem : undefined,
    );
    let first: StreamRequest | undefined;
    const stop = () => {
      body.off("data", onData);
      body.off("end", onEnd);
      wire.out.off("close", onEnd);
    };
    const onData = (chunk: Buffer) => {
      try {
        for (const env of splitter.push(text === undefined ? chunk : text.push(chunk))) {
          if ((env.flags & compressedFlag) === compressedFlag) throw compressedWithoutEncoding();
          if (protocol.skipFlag !== 0 && (env.flags & protocol.skipFlag) === protocol.skipFlag) continue;
          const msg = parse(env.data);
          if (first !== undefined) throw extraInput();
          first = msg;
        }
      } catch (e) {
        stop();
        reject(e);
      }
    };
    const onEnd = () => {
      stop();
      try {
        text?.end();
        splitter.end();
        if (first === undefined) throw missingInput();
        resolve(first);
      } catch (e) {
        reject(e);
      }
    };
    body.on("data", onData);
    body.once("end", onEnd);
    wire.out.once("close", onEnd);
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
