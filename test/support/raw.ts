import * as http2 from "node:http2";
import { envelopeOf } from "./h2-grpc.js";

// Requests written by hand, byte for byte, for the inputs no well-behaved
// client would send: malformed protobuf, truncated envelopes, wrong types.

/** A gRPC/Connect envelope: flags, big-endian length, payload (text is UTF-8). */
export function envelope(payload: Uint8Array | string, flags = 0): Buffer {
  return envelopeOf(typeof payload === "string" ? Buffer.from(payload) : payload, flags);
}

export interface RawResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders;
}

/** One request over a fresh h2c connection; resolves when the response ends. */
export function h2Request(
  url: string,
  path: string,
  body: Uint8Array,
  headers: http2.OutgoingHttpHeaders,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks), trailers });
    });
    req.end(body);
  });
}

/** The gRPC status of a response: from trailers, or from headers for a trailers-only response. */
export function grpcStatus(res: RawResponse): { code: number; message: string } {
  const source = res.trailers["grpc-status"] !== undefined ? res.trailers : res.headers;
  return {
    code: Number(source["grpc-status"]),
    message: decodeURIComponent(String(source["grpc-message"] ?? "")),
  };
}
