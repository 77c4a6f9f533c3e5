import * as http2 from "node:http2";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { StreamRequestSchema, type StreamResponse, StreamResponseSchema } from "../../gen/stream/v1/stream_pb.js";

// gRPC by hand over node:http2, so a test sees exactly what the server put on
// the wire: header and trailer frames, every envelope, and the end of the
// stream, with control over the request body and the client's window.

export const streamPath = "/stream.v1.StreamService/Stream";

export interface GrpcExchange {
  /** Response headers (":status" among them), date left out. */
  headers: http2.IncomingHttpHeaders;
  /** Whether the response headers frame ended the stream (trailers-only). */
  headersEndStream: boolean;
  /** Trailers, undefined when there were none. */
  trailers: http2.IncomingHttpHeaders | undefined;
  /** Each envelope of the body: flags and payload. */
  envelopes: { flags: number; data: Buffer }[];
  /** Bytes after the last complete envelope. */
  leftover: number;
  /** RST_STREAM code the stream closed with (0 for a clean end). */
  rstCode: number;
}

export interface GrpcCallOptions {
  /** Request path. Default Stream's. */
  path?: string;
  /** Extra request headers; a value of undefined removes a default one. */
  headers?: Record<string, string | undefined>;
  /** Called with the open request once the first envelope arrived; may reset it. */
  onFirst?: (req: http2.ClientHttp2Stream, session: http2.ClientHttp2Session) => void;
}

export function requestEnvelope(init: MessageInitShape<typeof StreamRequestSchema>, flags = 0): Buffer {
  return envelopeOf(toBinary(StreamRequestSchema, create(StreamRequestSchema, init)), flags);
}

export function envelopeOf(payload: Uint8Array, flags = 0, length = payload.byteLength): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(length, 1);
  return Buffer.concat([head, payload]);
}

/** One call on a fresh connection; resolves when the stream closed. */
export function grpcCall(url: string, body: Buffer, options: GrpcCallOptions = {}): Promise<GrpcExchange> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": options.path ?? streamPath,
      "content-type": "application/grpc",
      te: "trailers",
    };
    for (const [k, v] of Object.entries(options.headers ?? {})) {
      if (v === undefined) delete headers[k];
      else headers[k] = v;
    }
    const req = session.request(headers);
    const out: GrpcExchange = {
      headers: {},
      headersEndStream: false,
      trailers: undefined,
      envelopes: [],
      leftover: 0,
      rstCode: 0,
    };
    let buf = Buffer.alloc(0);
    req.on("response", (h, flags) => {
      const { date: _, ...rest } = h;
      out.headers = rest;
      out.headersEndStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    req.on("trailers", (t) => {
      out.trailers = { ...t };
    });
    req.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const n = buf.readUInt32BE(1);
        out.envelopes.push({ flags: buf[0] ?? 0, data: buf.subarray(5, 5 + n) });
        buf = buf.subarray(5 + n);
        if (out.envelopes.length === 1) options.onFirst?.(req, session);
      }
    });
    req.on("error", () => {});
    req.on("close", () => {
      out.leftover = buf.length;
      out.rstCode = req.rstCode ?? 0;
      session.close();
      resolve(out);
    });
    req.end(body);
  });
}

export function decodeResponses(x: GrpcExchange): StreamResponse[] {
  return x.envelopes.map((e) => fromBinary(StreamResponseSchema, e.data));
}

/** The gRPC status: from the trailers, or from the headers of a trailers-only response. */
export function grpcStatusOf(x: GrpcExchange): { code: number; message: string } {
  const source = x.trailers?.["grpc-status"] !== undefined ? x.trailers : x.headers;
  return {
    code: Number(source["grpc-status"]),
    message: decodeURIComponent(String(source["grpc-message"] ?? "")),
  };
}
