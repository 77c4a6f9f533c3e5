import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { startServer, type TestServer } from "./support/server.js";
import { envelope, requestEnvelope, splitEnvelopes, streamPath } from "./support/wire.js";

// gRPC-Web's text mode by hand, over HTTP/1.1 and HTTP/2: the request's
// frames in base64 (in one piece, in padded pieces, cut anywhere), the
// answer's frames in base64 too, with its trailers in the body, CORS for a
// browser's origin, and the protocol's errors. Google's grpc-web runtime in
// Chromium is test/grpc-web.test.ts; connect-node does not speak text mode,
// so it is served on the lean road whatever --fast-path says.

interface TextAnswer {
  status: number;
  headers: Record<string, string>;
  messages: string[];
  /** The trailers frame (flag 0x80), as text. */
  trailers: string;
}

/** Decodes base64 four characters at a time, as grpc-web's client does: padding may come mid-body. */
function decodeGroups(text: string): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i + 4 <= text.length; i += 4) parts.push(Buffer.from(text.slice(i, i + 4), "base64"));
  return Buffer.concat(parts);
}

function framesOf(body: Buffer): Omit<TextAnswer, "status" | "headers"> {
  const messages: string[] = [];
  let trailers = "";
  for (const { flags, data } of splitEnvelopes(body).envelopes) {
    if (flags === 0x80) trailers = data.toString("latin1");
    else messages.push(fromBinary(StreamResponseSchema, data).message);
  }
  return { messages, trailers };
}

async function h1Call(url: string, body: string, headers: Record<string, string> = {}): Promise<TextAnswer> {
  const res = await fetch(`${url}${streamPath}`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1", ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, headers: Object.fromEntries(res.headers), ...framesOf(decodeGroups(text)) };
}

function h2Call(url: string, pieces: string[]): Promise<TextAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": streamPath,
      "content-type": "application/grpc-web-text+proto",
    });
    let status = 0;
    let headers: Record<string, string> = {};
    let text = "";
    req.on("response", (h) => {
      status = Number(h[":status"]);
      headers = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]));
    });
    req.setEncoding("latin1");
    req.on("data", (c: string) => {
      text += c;
    });
    req.on("end", () => {
      session.close();
      resolve({ status, headers, ...framesOf(decodeGroups(text)) });
    });
    req.on("error", reject);
    // Each piece in a DATA frame of its own, a turn apart.
    const send = (i: number) => {
      if (i === pieces.length) return void req.end();
      req.write(pieces[i]);
      setImmediate(() => send(i + 1));
    };
    send(0);
  });
}

describe("gRPC-Web text mode", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ corsOrigins: ["https://app.example"] });
  });
  after(() => srv.close());

  const request = requestEnvelope({ name: "Text", limit: 3n, interval: durationFromMs(0) });

  it("should stream over HTTP/1.1 in base64, trailers in the body, and answer a browser's origin", async () => {
    const x = await h1Call(srv.url, request.toString("base64"), { origin: "https://app.example" });
    assert.equal(x.status, 200);
    assert.equal(x.headers["content-type"], "application/grpc-web-text+proto");
    assert.equal(x.headers["access-control-allow-origin"], "https://app.example");
    assert.deepEqual(
      x.messages,
      [0, 1, 2].map((n) => `Hello Text, this is ${n} time stream message.`),
    );
    assert.match(x.trailers, /grpc-status: ?0/);
  });

  it("should take a request in padded pieces, cut anywhere, over HTTP/2", async () => {
    const first = request.subarray(0, 4).toString("base64");
    const second = request.subarray(4).toString("base64");
    const both = first + second;
    const x = await h2Call(srv.url, [both.slice(0, 3), both.slice(3, 9), both.slice(9)]);
    assert.equal(x.status, 200);
    assert.equal(x.messages.length, 3);
    assert.match(x.trailers, /grpc-status: ?0/);
  });

  it("should answer the protocol's errors in the trailers: bad input, no base64, an oversize length prefix", async () => {
    const bad = await h1Call(srv.url, requestEnvelope({ name: "a\nb", limit: 1n }).toString("base64"));
    assert.match(bad.trailers, /grpc-status: ?3/);
    const notBase64 = await h1Call(srv.url, "!!!!");
    assert.match(notBase64.trailers, /grpc-status: ?3/);
    assert.match(decodeURIComponent(notBase64.trailers), /the gRPC-Web text body is not base64/);
    const oversize = await h1Call(srv.url, envelope(Buffer.alloc(0), 0, 1 << 30).toString("base64"));
    assert.match(oversize.trailers, /grpc-status: ?8/);
  });
});
