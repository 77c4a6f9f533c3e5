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
  if (t.kind === "h2") return h2Wire(t.stream);
  return h1Wire(t.req as http.IncomingMessage, t.res as http.ServerResponse);
}

function h2Wire(stream: http2.ServerHttp2Stream): RpcWire {
  return {
    body: stream,
    out: stream,
    closed: () => stream.destroyed || stream.closed,
    closeReason: () => closedStreamReason(stream.rstCode ?? 0x8),
    respond(headers, trailersFollow) {
      stream.respond({ ":status": 200, ...headers }, { waitForTrailers: trailersFollow });
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
    },
    abort: () => resetStream(stream, http2.constants.NGHTTP2_CANCEL),
  };
}

/** As connect-node's onH1Close says it: one for every call, made once. */
const h1Closed = new DOMException("This operation was aborted", "AbortError");

function h1Wire(req: http.IncomingMessage, res: http.ServerResponse): RpcWire {
  let closed = false;
  res.once("close", () => {
    closed = true;
  });
  return {
    body: req,
    out: res,
    closed: () => closed || res.destroyed,
    // As connect-node's onH1Close: the request's error when there was one, else a plain AbortError.
    closeReason: () => h1Closed,
    respond(headers) {
      res.writeHead(200, headers);
    },
    write: (chunk) => res.write(chunk),
    // A response corks its socket for each chunk itself (chunked encoding writes three pieces).
    cork: () => {},
    uncork: () => {},
    end(tail) {
      if (tail === undefined) res.end();
      else res.end(tail);
    },
    // The connection goes with it: its kernel buffers hold what the peer never read.
    abort: () => {
      res.destroy();
      return true;
    },
  };
}
