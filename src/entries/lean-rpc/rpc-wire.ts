import type * as http from "node:http";
import * as http2 from "node:http2";
import type { Readable } from "node:stream";
import { closedStreamReason } from "../../connect-internals/protocol.js";
import type { Exchange } from "../../http/exchange.js";
import { resetStream } from "../../http/h2.js";

// One request and its response, over a raw HTTP/2 stream or an HTTP/1.1
// request and response: what the lean engine needs of either.

export interface RpcWire {
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
  /** Drops what is queued and closes: the peer took nothing for --send-timeout. True when the connection went too. */
  abort(): boolean;
}

export function rpcWireOf(x: Exchange): RpcWire {
  const t = x.transport;
  if (t.kind === "h2") return new H2Wire(t.stream);
  return new H1Wire(t.req as http.IncomingMessage, t.res as http.ServerResponse);
}

// Classes, not object literals of arrow functions: a stream lives for hours,
// and ten closures and their context per stream were a tenth of an idle
// stream's heap (npm run bench:heap).

class H2Wire implements RpcWire {
  constructor(private readonly stream: http2.ServerHttp2Stream) {}

  get body(): Readable {
    return this.stream;
  }

  get out(): NodeJS.EventEmitter {
    return this.stream;
  }

  closed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  closeReason(): unknown {
    return closedStreamReason(this.stream.rstCode ?? 0x8);
  }

  respond(headers: http.OutgoingHttpHeaders, trailersFollow: boolean): void {
    this.stream.respond({ ":status": 200, ...headers }, { waitForTrailers: trailersFollow });
  }

  write(chunk: Buffer): boolean {
    return this.stream.write(chunk);
  }

  cork(): void {
    this.stream.cork();
  }

  uncork(): void {
    this.stream.uncork();
  }

  end(tail: Buffer | undefined, trailers: http2.OutgoingHttpHeaders | undefined): void {
    const stream = this.stream;
    if (trailers !== undefined) {
      stream.once("wantTrailers", () => {
        if (!stream.destroyed) stream.sendTrailers(trailers);
      });
    }
    if (tail === undefined) stream.end();
    else stream.end(tail);
  }

  abort(): boolean {
    return resetStream(this.stream, http2.constants.NGHTTP2_CANCEL);
  }
}

/** As connect-node's onH1Close says it: one for every call, made once. */
const h1Closed = new DOMException("This operation was aborted", "AbortError");

class H1Wire implements RpcWire {
  private gone = false;

  constructor(
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
  ) {
    res.once("close", () => {
      this.gone = true;
    });
  }

  get body(): Readable {
    return this.req;
  }

  get out(): NodeJS.EventEmitter {
    return this.res;
  }

  closed(): boolean {
    return this.gone || this.res.destroyed;
  }

  /** As connect-node's onH1Close: the request's error when there was one, else a plain AbortError. */
  closeReason(): unknown {
    return h1Closed;
  }

  respond(headers: http.OutgoingHttpHeaders): void {
    this.res.writeHead(200, headers);
  }

  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  /** A response corks its socket for each chunk itself (chunked encoding writes three pieces). */
  cork(): void {}

  uncork(): void {}

  end(tail: Buffer | undefined): void {
    if (tail === undefined) this.res.end();
    else this.res.end(tail);
  }

  /** The connection goes with it: its kernel buffers hold what the peer never read. */
  abort(): boolean {
    this.res.destroy();
    return true;
  }
}
