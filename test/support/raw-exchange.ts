import * as http from "node:http";
import * as http2 from "node:http2";
import { type Envelope, splitEnvelopes } from "./wire.js";

// One request, sent as is over HTTP/1.1 or HTTP/2, and everything that came
// back: status, headers, the body split into envelopes, trailers, and how the
// response ended. For the differential suites, which send the same bytes to
// the lean road and to connect-node and compare.

export interface RawExchange {
  status: number;
  /** Response headers, date and the HTTP/1.1 connection headers left out. */
  headers: Record<string, string | string[] | undefined>;
  /** The body's envelopes: flags and payload. */
  envelopes: Envelope[];
  /** Bytes after the last complete envelope. */
  leftover: number;
  trailers: Record<string, string | string[] | undefined> | undefined;
  /** HTTP/2: the response headers frame ended the stream (no body). */
  headersEndStream: boolean;
  /** HTTP/2: the RST_STREAM code the stream closed with (0 for a clean end). */
  rstCode: number;
}

export interface RawRequest {
  url: string;
  http2: boolean;
  path: string;
  method?: string;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

const dropped = new Set(["date", "connection", "keep-alive"]);

function clean(h: Record<string, unknown>): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(h)) {
    if (dropped.has(k) || v === undefined) continue;
    out[k] = Array.isArray(v) ? v.map(String) : String(v);
  }
  return out;
}

export function rawExchange(r: RawRequest): Promise<RawExchange> {
  return r.http2 ? h2Exchange(r) : h1Exchange(r);
}

function h2Exchange(r: RawRequest): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(r.url);
    session.on("error", reject);
    const headers: http2.OutgoingHttpHeaders = { ":method": r.method ?? "POST", ":path": r.path };
    for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = v;
    const req = session.request(headers);
    let status = 0;
    let responseHeaders: Record<string, unknown> = {};
    let headersEndStream = false;
    let trailers: RawExchange["trailers"];
    const chunks: Buffer[] = [];
    req.on("response", (h, flags) => {
      status = Number(h[":status"]);
      const { ":status": _s, ...rest } = h;
      responseHeaders = rest;
      headersEndStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    req.on("trailers", (t) => {
      trailers = clean(t);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("close", () => {
      const body = Buffer.concat(chunks);
      resolve({
        status,
        headers: clean(responseHeaders),
        ...splitEnvelopes(body),
        trailers,
        headersEndStream,
        rstCode: req.rstCode ?? 0,
      });
      session.close();
    });
    req.end(r.body);
  });
}

function h1Exchange(r: RawRequest): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = v;
    const req = http.request(`${r.url}${r.path}`, { method: r.method ?? "POST", headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: clean(res.headers),
          ...splitEnvelopes(Buffer.concat(chunks)),
          trailers: Object.keys(res.trailers).length === 0 ? undefined : clean(res.trailers),
          headersEndStream: false,
          rstCode: 0,
        });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(r.body);
  });
}
