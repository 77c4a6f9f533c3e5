import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { type StreamRequest, type StreamResponse, StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { decodeRequest } from "./wire.js";

// The baseline: what a Node user writes today with @grpc/grpc-js. Default
// server options, protobuf-es for (de)serialization, call.write() with its
// return value and 'drain' respected, one timer per stream, cancellation
// handled. Same contract as ours: name (empty means "Anonymous"),
// interval (unset means 2 s, 0 means as fast as the client reads), limit,
// start_at, first message at once.
//
//   node --import tsx bench/grpc-js-server.ts --port 0 [--host 127.0.0.1]

const DEFAULT_INTERVAL_MS = 2000;
const MAX_INTERVAL_MS = 3_600_000;

const streamService: grpc.ServiceDefinition = {
  stream: {
    path: "/stream.v1.StreamService/Stream",
    requestStream: false,
    responseStream: true,
    requestSerialize: () => {
      throw new Error("server only");
    },
    requestDeserialize: (bytes: Buffer) => decodeRequest(bytes),
    responseSerialize: (msg: StreamResponse) => Buffer.from(toBinary(StreamResponseSchema, msg)),
    responseDeserialize: () => {
      throw new Error("server only");
    },
  },
};

function invalid(call: grpc.ServerWritableStream<StreamRequest, StreamResponse>, details: string): void {
  call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details });
}

function stream(call: grpc.ServerWritableStream<StreamRequest, StreamResponse>): void {
  const req = call.request;
  let name = req.name;
  if (name === "") name = "Anonymous";
  if ([...name].length > 100) {
    invalid(call, "name: must be at most 100 characters");
    return;
  }
  if (/[\p{Cc}\u2028\u2029]/u.test(name)) {
    invalid(call, "name: must not contain control characters");
    return;
  }
  let intervalMs = DEFAULT_INTERVAL_MS;
  if (req.interval !== undefined) {
    intervalMs = Number(req.interval.seconds) * 1000 + req.interval.nanos / 1e6;
    if (!(intervalMs >= 0 && intervalMs <= MAX_INTERVAL_MS)) {
      invalid(call, "interval: must be between 0s and 3600s");
      return;
    }
  }
  const limit = req.limit;
  let counter = req.startAt;
  let sent = 0n;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  let due = performance.now();
  call.on("cancelled", () => {
    done = true;
    clearTimeout(timer);
    call.removeListener("drain", send);
  });
  function send(): void {
    while (!done) {
      const ms = Date.now();
      const ok = call.write(
        create(StreamResponseSchema, {
          message: `Hello ${name}, this is ${counter} time stream message.`,
          counter,
          timestamp: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
        }),
      );
      counter++;
      sent++;
      if (sent === limit) {
        done = true;
        call.end();
        return;
      }
      if (intervalMs > 0) {
        // Keep to the schedule without bursting to catch up, like ours.
        const now = performance.now();
        due = Math.max(due + intervalMs, now);
        timer = setTimeout(ok ? send : () => call.once("drain", send), due - now);
        return;
      }
      if (!ok) {
        call.once("drain", send);
        return;
      }
    }
  }
  send();
}

const { values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" } } });
const server = new grpc.Server();
server.addService(streamService, { stream });
server.bindAsync(
  `${values.host ?? "127.0.0.1"}:${values.port ?? "0"}`,
  grpc.ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ msg: "listening", port })}\n`);
  },
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    server.forceShutdown();
    process.exit(0);
  });
}
