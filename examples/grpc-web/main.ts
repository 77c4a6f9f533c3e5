import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { GrpcWebClientBase } from "grpc-web";
import { type ResumeStatus, resumeStream } from "../../packages/client/src/index.js";
import { grpcWebCaller } from "./grpc-web-caller.js";

// A page that streams with Google's grpc-web runtime in text mode
// (application/grpc-web-text, the only mode in which grpc-web streams from
// the server), resuming with start_at after a break. Its query names the
// server and the stream: ?server=http://localhost:8080&name=Ada&interval_ms=500
// (and max_attempts, timeout_ms: resumeStream()'s options).
// Each message is an <li data-counter>; each status is logged as
// "stream status: <state>" and shown in <output>.

const query = new URLSearchParams(location.search);
const server = query.get("server") ?? location.origin;
const client = new GrpcWebClientBase({ format: "text" });
const list = document.body.appendChild(document.createElement("ol"));
const statusLine = document.body.appendChild(document.createElement("output"));

function showStatus(status: ResumeStatus): void {
  statusLine.dataset.state = status.state;
  statusLine.textContent = `${status.state}${status.error ? `: ${status.error.message}` : ""}`;
  console.info(`stream status: ${status.state}${status.error ? ` ${status.error.message}` : ""}`);
}

const request = {
  name: query.get("name") ?? "grpc-web",
  interval: durationFromMs(Number(query.get("interval_ms") ?? 1000)),
};
const timeoutMs = query.get("timeout_ms");
const options = {
  onStatus: showStatus,
  maxAttempts: Number(query.get("max_attempts") ?? Number.POSITIVE_INFINITY),
  ...(timeoutMs !== null ? { timeoutMs: Number(timeoutMs) } : {}),
};
try {
  for await (const m of resumeStream(grpcWebCaller(client, server), request, options)) {
    const item = list.appendChild(document.createElement("li"));
    item.dataset.counter = String(m.counter);
    item.textContent = m.message;
  }
} catch {
  // Shown by showStatus() as "error".
}
