import * as http from "node:http";
import { create, fromJson } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { codeFromHttpStatus, codeToString, errorFromJson } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { type StreamResponse, StreamResponseSchema, StreamService } from "../../gen/stream/v1/stream_pb.js";
import { sleep } from "../../packages/client/src/backoff.js";
import { resumeStream, type StreamCaller } from "../../packages/client/src/index.js";
import { type ClientKind, newTrace, recordBreak, recordMessage, type Trace } from "./traces.js";

// Resuming clients of every kind Node can be, each recording the exact
// sequence of counters it received and every break:
// - gRPC, Connect (HTTP/1.1 and HTTP/2) and gRPC-Web: the generated client
//   under the client package's resumeStream(), as `npm run client` runs it;
// - NDJSON: GET /stream under the same resumeStream(), which asks again
//   with start_at = last + 1 and the limit that is left;
// - SSE: an EventSource of our own that asks the same URL again with
//   Last-Event-ID, as a browser does, and stops at the 204 that ends a
//   complete stream.
// The counters are recorded as they come off the wire, before the resume
// logic drops a duplicate, so a server or proxy that repeats one is caught.

/** One attempt of a stream. */
type OpenStream = StreamCaller["stream"];

export type NodeClientKind = Exclude<ClientKind, "browser-page" | "browser-eventsource">;

export const nodeClientKinds: readonly NodeClientKind[] = [
  "grpc",
  "connect-h1",
  "connect-h2",
  "grpc-web",
  "ndjson",
  "sse",
];

/** Where clients connect: one HTTP/1.1 and one HTTP/2 (prior knowledge) base URL, the same for a bare server. */
export interface Endpoints {
  h1: string;
  h2: string;
}

export interface ClientPlan {
  kind: NodeClientKind;
  name: string;
  startAt: number;
  limit: number;
  intervalMs: number;
  /**
   * HTTP/2 kinds (grpc, connect-h2): clients of one kind with the same key
   * share a connection, as the streams of one gRPC channel do. Default: a
   * connection of its own.
   */
  connection?: string;
}

/** Transports by kind and connection key, for ClientPlan.connection. */
export type SharedTransports = Map<string, Transport>;

export interface RunningClient {
  readonly trace: Trace;
  /** Settles when the client finished, stopped or failed; never rejects. */
  readonly done: Promise<void>;
}

/** Starts one resuming client; `signal` stops it (outcome "stopped"). */
export function startClient(
  plan: ClientPlan,
  endpoints: Endpoints,
  signal: AbortSignal,
  shared: SharedTransports = new Map(),
): RunningClient {
  const trace = newTrace(plan.kind, plan.name, plan.startAt, plan.limit, plan.intervalMs);
  const run =
    plan.kind === "sse"
      ? runSse(plan, endpoints.h1, trace, signal)
      : runResuming(plan, endpoints, trace, signal, shared);
  const done = run.then(
    (outcome) => {
      trace.outcome = outcome;
    },
    (e: unknown) => {
      trace.outcome = "failed";
      trace.error = e instanceof Error ? e.message : String(e);
    },
  );
  return { trace, done };
}

async function runResuming(
  plan: ClientPlan,
  endpoints: Endpoints,
  trace: Trace,
  signal: AbortSignal,
  shared: SharedTransports,
): Promise<"done" | "stopped"> {
  let open: OpenStream;
  if (plan.kind === "ndjson") open = ndjsonOpen(endpoints.h1);
  else {
    const key = `${plan.kind} ${plan.connection ?? plan.name}`;
    const transport = shared.get(key) ?? transportFor(plan.kind, endpoints);
    shared.set(key, transport);
    open = rpcOpen(transport);
  }
  const caller: StreamCaller = { stream: (request, options) => tapped(open(request, options), trace, options.signal) };
  const request = {
    name: plan.name,
    interval: durationOf(plan.intervalMs),
    limit: BigInt(plan.limit),
    startAt: BigInt(plan.startAt),
  };
  // What arrives is recorded by tapped(), off the wire.
  for await (const _ of resumeStream(caller, request, { signal })) {
  }
  return signal.aborted ? "stopped" : "done";
}

function transportFor(kind: NodeClientKind, { h1, h2 }: Endpoints): Transport {
  switch (kind) {
    case "grpc":
      return createGrpcTransport({ baseUrl: h2 });
    case "connect-h1":
      return createConnectTransport({ baseUrl: h1, httpVersion: "1.1" });
    case "connect-h2":
      return createConnectTransport({ baseUrl: h2, httpVersion: "2" });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl: h1, httpVersion: "1.1" });
    default:
      throw new Error(`${kind} has no transport`);
  }
}

function rpcOpen(transport: Transport): OpenStream {
  const client = createClient(StreamService, transport);
  return (request, options) => client.stream(request, options);
}

/** Records what comes off the wire, and the error that ends it, on its way to resumeStream(). */
async function* tapped(stream: AsyncIterable<StreamResponse>, trace: Trace, signal: AbortSignal | undefined) {
  try {
    for await (const m of stream) {
      recordMessage(trace, Number(m.counter));
      yield m;
    }
  } catch (e) {
    if (!signal?.aborted) {
      const error = ConnectError.from(e);
      recordBreak(trace, codeToString(error.code), error.rawMessage);
    }
    throw e;
  }
}

/** GET /stream as NDJSON, read line by line; an error line or a cut response throws a ConnectError. */
function ndjsonOpen(baseUrl: string): OpenStream {
  return (request, { signal }) =>
    (async function* () {
      const query = new URLSearchParams({
        name: request.name,
        limit: String(request.limit),
        start_at: String(request.startAt),
        ...(request.interval
          ? { interval: `${Number(request.interval.seconds) + request.interval.nanos / 1e9}s` }
          : {}),
      });
      // resumeStream() always passes a signal (runResuming gives it one).
      const res = await get(`${baseUrl}/stream?${query}`, {}, signal ?? new AbortController().signal);
      if (res.statusCode !== 200) throw await httpError(res);
      let received = 0n;
      for await (const line of lines(res)) {
        const json = JSON.parse(line);
        if (json.error !== undefined) {
          throw errorFromJson(json.error, undefined, new ConnectError(`error line: ${line}`, Code.Unknown));
        }
        received++;
        yield fromJson(StreamResponseSchema, json);
      }
      // NDJSON has no end marker: a clean end short of the limit is a cut stream all the same.
      if (request.limit !== 0n && received < request.limit) {
        throw new ConnectError(
          `response ended after ${received} of ${request.limit} lines, without an error line`,
          Code.Unavailable,
        );
      }
    })();
}

export interface SseOptions {
  /** Reconnection time in ms, before jitter and backoff; a `retry:` field replaces it. Default 250. */
  retryMs?: number;
}

/**
 * EventSource's rules, in Node: the same URL each time, with Last-Event-ID
 * once an event carried an id; a 204 ends it for good. Two departures, both
 * so that a test run stays short and finishes: a reconnect waits a random
 * time up to the reconnection time (doubling after each failure in a row, at
 * most 8 s), and an answer other than 200 or 204 (a proxy's 502) is retried
 * instead of closing the source. A browser's EventSource gives up on those.
 */
async function runSse(plan: ClientPlan, baseUrl: string, trace: Trace, signal: AbortSignal, options: SseOptions = {}) {
  let retryMs = options.retryMs ?? 250;
  const query = new URLSearchParams({
    name: plan.name,
    interval: `${plan.intervalMs / 1000}s`,
    limit: String(plan.limit),
    start_at: String(plan.startAt),
  });
  const url = `${baseUrl}/stream?${query}`;
  let lastEventId: string | undefined;
  let failures = 0;
  for (;;) {
    if (signal.aborted) return "stopped" as const;
    try {
      const headers: http.OutgoingHttpHeaders = { accept: "text/event-stream" };
      if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
      const res = await get(url, headers, signal);
      if (res.statusCode === 204) {
        res.resume();
        return "done" as const;
      }
      if (res.statusCode !== 200) throw await httpError(res);
      for await (const event of sseEvents(res)) {
        if (event.retry !== undefined) retryMs = event.retry;
        if (event.type === "error") {
          throw errorFromJson(
            JSON.parse(event.data),
            undefined,
            new ConnectError(`error event: ${event.data}`, Code.Unknown),
          );
        }
        if (event.id === undefined) throw new Error(`an event without id: ${event.data}`);
        lastEventId = event.id;
        failures = 0;
        const counter = Number(JSON.parse(event.data).counter ?? 0);
        if (String(counter) !== event.id) throw new Error(`event id ${event.id} carries counter ${counter}`);
        recordMessage(trace, counter);
      }
      // A clean end: EventSource reconnects, and for a complete stream gets the 204.
      const complete =
        plan.limit > 0 && lastEventId !== undefined && Number(lastEventId) >= plan.startAt + plan.limit - 1;
      if (!complete) recordBreak(trace, "unavailable", "response ended without an error event");
    } catch (e) {
      if (signal.aborted) return "stopped" as const;
      if (!(e instanceof ConnectError)) throw e;
      recordBreak(trace, codeToString(e.code), e.rawMessage);
      failures++;
    }
    await sleep(Math.random() * Math.min(8000, retryMs * 2 ** Math.max(0, failures - 1)), signal);
  }
}

interface SseEvent {
  type: string;
  data: string;
  id?: string;
  retry?: number;
}

/** The event stream format (WHATWG HTML, 9.2.6) as events; comments and heartbeats are skipped. */
async function* sseEvents(res: http.IncomingMessage): AsyncGenerator<SseEvent> {
  let type = "message";
  let data: string[] = [];
  let id: string | undefined;
  let retry: number | undefined;
  for await (const line of lines(res)) {
    if (line === "") {
      if (data.length > 0) {
        yield {
          type,
          data: data.join("\n"),
          ...(id !== undefined ? { id } : {}),
          ...(retry !== undefined ? { retry } : {}),
        };
      }
      type = "message";
      data = [];
      id = undefined;
      retry = undefined;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
}

/** Lines of a response body; a response cut before its end throws a ConnectError (UNAVAILABLE). */
async function* lines(res: http.IncomingMessage): AsyncGenerator<string> {
  let buffered = "";
  res.setEncoding("utf8");
  try {
    for await (const chunk of res as AsyncIterable<string>) {
      buffered += chunk;
      let nl = buffered.search(/\r\n|\r|\n/);
      while (nl !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(buffered[nl] === "\r" && buffered[nl + 1] === "\n" ? nl + 2 : nl + 1);
        yield line;
        nl = buffered.search(/\r\n|\r|\n/);
      }
    }
  } catch (e) {
    throw new ConnectError(`response cut: ${e instanceof Error ? e.message : String(e)}`, Code.Unavailable);
  }
  if (buffered !== "") yield buffered;
}

/** A GET on a connection of its own; a connection that fails becomes a ConnectError (UNAVAILABLE). */
function get(url: string, headers: http.OutgoingHttpHeaders, signal: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, signal }, resolve);
    req.on("error", (e) =>
      reject(signal.aborted ? e : new ConnectError(`request failed: ${e.message}`, Code.Unavailable)),
    );
  });
}

/** A non-200 answer as the Connect protocol maps HTTP statuses (502, 503, 504: UNAVAILABLE). */
async function httpError(res: http.IncomingMessage): Promise<ConnectError> {
  let body = "";
  res.setEncoding("utf8");
  for await (const chunk of res as AsyncIterable<string>) if (body.length < 200) body += chunk;
  const status = res.statusCode ?? 0;
  return new ConnectError(`HTTP ${status}: ${body.trim().slice(0, 200)}`, codeFromHttpStatus(status));
}

function durationOf(ms: number) {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}
