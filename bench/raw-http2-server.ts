import * as http2 from "node:http2";
import { parseArgs } from "node:util";
import { decodeRequest, encodeResponseFrame, maxFrameSize } from "./wire.js";

// The ceiling: node:http2 with nothing in between. Each stream gets its
// responses encoded by hand straight into 16 KiB buffers, one write per
// buffer, 'drain' respected. Speaks gRPC only, and enough of the contract for
// the benchmark's checks (name, interval, limit, start_at, cancellation).
//
//   node --import tsx bench/raw-http2-server.ts --port 0 [--host 127.0.0.1]

const BATCH_BYTES = 16 * 1024;
const DEFAULT_INTERVAL_MS = 2000;
const PATH = "/stream.v1.StreamService/Stream";

function fail(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": String(code), "grpc-message": message },
    { endStream: true },
  );
}

function serve(stream: http2.ServerHttp2Stream, body: Buffer): void {
  if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
    fail(stream, 3, "want one request message");
    return;
  }
  const req = decodeRequest(body.subarray(5));
  const name = req.name === "" ? "Anonymous" : req.name;
  if ([...name].length > 100) {
    fail(stream, 3, "name: must be at most 100 characters");
    return;
  }
  const intervalMs =
    req.interval === undefined ? DEFAULT_INTERVAL_MS : Number(req.interval.seconds) * 1000 + req.interval.nanos / 1e6;
  if (!(intervalMs >= 0 && intervalMs <= 3_600_000)) {
    fail(stream, 3, "interval: must be between 0s and 3600s");
    return;
  }
  let counter = Number(req.startAt);
  const end = req.limit === 0n ? Number.MAX_SAFE_INTEGER : counter + Number(req.limit);
  const frameMax = maxFrameSize(Buffer.byteLength(name));
  let timer: NodeJS.Timeout | undefined;
  let due = performance.now();
  stream.on("close", () => clearTimeout(timer));
  stream.on("error", () => {});
  stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });

  const flood = (): void => {
    while (!stream.destroyed) {
      const batch = Buffer.allocUnsafe(BATCH_BYTES);
      const ms = Date.now();
      let off = 0;
      while (counter < end && off + frameMax <= BATCH_BYTES) off = encodeResponseFrame(batch, off, name, counter++, ms);
      if (counter === end) {
        stream.end(batch.subarray(0, off));
        return;
      }
      if (!stream.write(batch.subarray(0, off))) {
        stream.once("drain", flood);
        return;
      }
    }
  };
  const tick = (): void => {
    if (stream.destroyed) return;
    const frame = Buffer.allocUnsafe(frameMax);
    const len = encodeResponseFrame(frame, 0, name, counter++, Date.now());
    if (counter === end) {
      stream.end(frame.subarray(0, len));
      return;
    }
    stream.write(frame.subarray(0, len));
    const now = performance.now();
    due = Math.max(due + intervalMs, now);
    timer = setTimeout(tick, due - now);
  };
  if (intervalMs === 0) flood();
  else tick();
}

const { values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" } } });
const server = http2.createServer();
server.on("session", (session) => session.on("error", () => {}));
server.on("stream", (stream, headers) => {
  if (headers[":path"] !== PATH || headers[":method"] !== "POST") {
    stream.respond({ ":status": 404 }, { endStream: true });
    return;
  }
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.once("end", () => {
    try {
      serve(stream, Buffer.concat(chunks));
    } catch (e) {
      if (!stream.headersSent) fail(stream, 13, e instanceof Error ? e.message : "internal");
    }
  });
});
server.listen(Number(values.port ?? 0), values.host ?? "127.0.0.1", () => {
  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: "listening", port })}\n`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => process.exit(0));
}
