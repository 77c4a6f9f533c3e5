import * as http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { type StreamResponse, StreamResponseSchema } from "../../gen/stream/v1/stream_pb.js";
import { createEnvelopeReader, type Envelope, grpcRequestHeaders, streamPath } from "./wire.js";

// gRPC by hand over node:http2, so a test sees exactly what the server put on
// the wire: header and trailer frames, every envelope, and the end of the
// stream, with control over the request body and the client's window.

export interface GrpcExchange {
  /** Response headers (":status" among them), date left out. */
  headers: http2.IncomingHttpHeaders;
  /** Whether the response headers frame ended the stream (trailers-only). */
  headersEndStream: boolean;
  /** Trailers, undefined when there were none. */
  trailers: http2.IncomingHttpHeaders | undefined;
  /** Each envelope of the body: flags and payload. */
  envelopes: Envelope[];
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

/** One call on a fresh connection; resolves when the stream closed. */
export function grpcCall(url: string, body: Buffer, options: GrpcCallOptions = {}): Promise<GrpcExchange> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request(grpcRequestHeaders({ ":path": options.path ?? streamPath, ...options.headers }));
    const out: GrpcExchange = {
      headers: {},
      headersEndStream: false,
      trailers: undefined,
      envelopes: [],
      leftover: 0,
      rstCode: 0,
    };
    let received = 0;
    let enveloped = 0;
    // The reader's payloads are views it may not keep: copied, as the exchange outlives the call.
    const read = createEnvelopeReader((flags, data) => {
      out.envelopes.push({ flags, data: Buffer.from(data) });
      enveloped += 5 + data.length;
      if (out.envelopes.length === 1) options.onFirst?.(req, session);
    });
    req.on("response", (h, flags) => {
      const { date: _, ...rest } = h;
      out.headers = rest;
      out.headersEndStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    req.on("trailers", (t) => {
      out.trailers = { ...t };
    });
    req.on("data", (chunk: Buffer) => {
      received += chunk.length;
      read(chunk);
    });
    req.on("error", () => {});
    req.on("close", () => {
      out.leftover = received - enveloped;
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
