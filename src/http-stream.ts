import { fromJson, toJsonString } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { type StreamResponse, StreamResponseSchema } from "../gen/stream/v1/stream_pb.js";
import { drainedOrClosed } from "./drain.js";
import { MAX_COUNTER, type StreamParams } from "./greeting.js";
import { type NodeRequest, type NodeResponse, type PlainHandler, sendJsonError } from "./plain-routes.js";
import { peerOf, requestIdFrom } from "./routes.js";
import type { CallInfo, StreamService } from "./stream-service.js";

// GET /stream for curl and EventSource: the query string becomes the same
// StreamParams the RPC carries, and the messages come from the same
// StreamService.open() generator, written as NDJSON or, with
// "Accept: text/event-stream", as Server-Sent Events. This file only encodes:
// validation, pacing, cancellation and logging stay in the generator. Error
// messages start with the parameter's name, worded like greeting.ts's.

export interface HttpStreamOptions {
  streams: StreamService;
  /** An SSE stream that wrote nothing for this long gets a ": heartbeat" comment line. Default 15000. */
  heartbeatMs?: number;
}

type Format = "ndjson" | "sse";

const params = new Set(["name", "interval", "limit", "start_at"]);
const uint64 = /^\d{1,20}$/;

/** The GET /stream handler, for PlainRoutes. */
export function createHttpStreamRoute(options: HttpStreamOptions): PlainHandler {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  return (req, res) => {
    const requestId = requestIdFrom(header(req, "x-request-id"));
    if (req.method !== "GET") {
      sendJsonError(res, 405, "unimplemented", `method ${req.method} not allowed on /stream; use GET`, {
        allow: "GET",
        "x-request-id": requestId,
      });
      return;
    }
    const format: Format = acceptsEventStream(header(req, "accept")) ? "sse" : "ndjson";
    let request: StreamParams | undefined;
    try {
      request = parseQuery(req.url ?? "/stream", format === "sse" ? header(req, "last-event-id") : undefined);
    } catch (e) {
      sendError(res, ConnectError.from(e), requestId);
      return;
    }
    if (request === undefined) {
      // EventSource reconnects after every end; 204 is the one answer that makes it stop for good.
      res.writeHead(204, { "x-request-id": requestId });
      res.end();
      return;
    }
    const call: CallInfo = { peer: peerOf(req.socket), protocol: format, httpVersion: req.httpVersion, requestId };
    // serve() catches what the stream throws; this is for a socket that fails under us mid-write.
    serve(options.streams, request, call, format, heartbeatMs, res).catch(() => res.destroy());
  };
}

async function serve(
  streams: StreamService,
  request: StreamParams,
  call: CallInfo,
  format: Format,
  heartbeatMs: number,
  res: NodeResponse,
): Promise<void> {
  const abort = new AbortController();
  let ended = false;
  const onClose = () => {
    if (!ended) abort.abort(new ConnectError("client disconnected", Code.Canceled));
  };
  res.once("close", onClose);
  const messages = streams.open(request, call, abort.signal);

  // The generator validates on the first next(): until it answers, the status is still ours to choose.
  let next: IteratorResult<StreamResponse, void>;
  try {
    next = await messages.next();
  } catch (e) {
    ended = true;
    res.off("close", onClose);
    sendError(res, ConnectError.from(e), call.requestId);
    return;
  }
  res.writeHead(200, {
    "content-type": format === "sse" ? "text/event-stream; charset=utf-8" : "application/x-ndjson",
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    // nginx buffers proxied responses unless told otherwise, which would hold every message back.
    "x-accel-buffering": "no",
    "x-request-id": call.requestId,
  });

  let draining = false;
  const heartbeat =
    format === "sse"
      ? setInterval(() => {
          // A blocked socket is not idle, and a heartbeat queued behind it would only grow the buffer.
          if (!draining && !res.writableEnded && !res.destroyed) res.write(": heartbeat\n");
        }, heartbeatMs)
      : undefined;
  try {
    while (!next.done) {
      const ok = res.write(encode(format, next.value));
      heartbeat?.refresh();
      if (!ok && !res.destroyed) {
        // Pull-based backpressure: the next message is made only once this one has left.
        draining = true;
        await drainedOrClosed(res);
        draining = false;
      }
      if (abort.signal.aborted) {
        await messages.return();
        return;
      }
      next = await messages.next();
    }
  } catch (e) {
    // Mid-stream the status is sent already: say why in the body's own format, then end.
    if (!abort.signal.aborted && !res.destroyed) res.write(encodeError(format, ConnectError.from(e)));
  } finally {
    clearInterval(heartbeat);
    ended = true;
    res.off("close", onClose);
    if (!res.writableEnded) res.end();
  }
}

/** Query string (and Last-Event-ID) to StreamParams; undefined when Last-Event-ID says the stream is complete. */
export function parseQuery(url: string, lastEventId: string | undefined): StreamParams | undefined {
  const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
  const seen = new Set<string>();
  for (const key of query.keys()) {
    if (!params.has(key)) throw invalid(`${key} is not a parameter (expected name, interval, limit or start_at)`);
    if (seen.has(key)) throw invalid(`${key} is given more than once`);
    seen.add(key);
  }
  const limit = counter("limit", query.get("limit"));
  let startAt = counter("start_at", query.get("start_at"));
  const interval = duration(query.get("interval"));
  let remaining = limit;
  if (lastEventId !== undefined && lastEventId.trim() !== "") {
    const last = counter("Last-Event-ID", lastEventId.trim());
    // The same URL comes back on every reconnect: go on after `last`, with what is left of the limit.
    if (last + 1n < startAt) throw invalid(`Last-Event-ID ${last} is before start_at ${startAt}`);
    if (limit !== 0n) {
      const sent = last + 1n - startAt;
      if (sent >= limit) return undefined;
      remaining = limit - sent;
    }
    startAt = last + 1n;
  }
  return {
    name: query.get("name") ?? "",
    ...(interval !== undefined ? { interval } : {}),
    limit: remaining,
    startAt,
  };
}

function counter(name: string, raw: string | null): bigint {
  if (raw === null) return 0n;
  const n = uint64.test(raw) ? BigInt(raw) : -1n;
  if (n < 0n || n > MAX_COUNTER) throw invalid(`${name} must be a whole number from 0 to ${MAX_COUNTER}`);
  return n;
}

function duration(raw: string | null): Duration | undefined {
  if (raw === null) return undefined;
  try {
    return fromJson(DurationSchema, raw);
  } catch {
    throw invalid(`interval must be a duration such as 0.5s or 2s (got ${JSON.stringify(raw)})`);
  }
}

function encode(format: Format, message: StreamResponse): string {
  const json = toJsonString(StreamResponseSchema, message);
  return format === "sse" ? `id: ${message.counter}\ndata: ${json}\n\n` : `${json}\n`;
}

/** NDJSON: a last line {"error": {...}}; SSE: an "error" event. Either way the Connect error shape. */
function encodeError(format: Format, error: ConnectError): string {
  const body = { code: codeToString(error.code), message: clientMessage(error) };
  return format === "sse" ? `event: error\ndata: ${JSON.stringify(body)}\n\n` : `${JSON.stringify({ error: body })}\n`;
}

function sendError(res: NodeResponse, error: ConnectError, requestId: string): void {
  // Statuses as the Connect protocol maps codes (invalid_argument 400, resource_exhausted 429, unavailable 503).
  sendJsonError(res, codeToHttpStatus(error.code), codeToString(error.code), clientMessage(error), {
    "x-request-id": requestId,
  });
}

/** The generator logged the cause; a bug's message (unknown, internal) is not for the client. */
function clientMessage(error: ConnectError): string {
  return error.code === Code.Internal || error.code === Code.Unknown ? "internal error" : error.rawMessage;
}

function acceptsEventStream(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return accept.split(",").some((range) => range.split(";", 1)[0]?.trim().toLowerCase() === "text/event-stream");
}

function header(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
