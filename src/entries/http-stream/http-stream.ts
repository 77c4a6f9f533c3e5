import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { clientMessage, codeName } from "../../core/errors.js";
import type { StreamParams } from "../../core/greeting.js";
import type { CallInfo, GreetingStream, GreetingStreams } from "../../core/stream-service.js";
import { type NodeRequest, type NodeResponse, type PlainHandler, sendJsonError } from "../../http/plain-routes.js";
import { authenticate, type BearerTokens, sendAuthFailure } from "../kit/auth.js";
import { createCallInfo } from "../kit/call.js";
import { GreetingWire } from "../kit/greeting-wire.js";
import { joinStrings, WriteBatch } from "../kit/write-batch.js";
import { accessTokenParam, parseQuery, queryOf } from "./query.js";

// The GET /stream road, for curl and EventSource: the query string becomes
// the same StreamParams the RPC carries, and the messages come from the same
// generator, written as NDJSON or, with "Accept: text/event-stream", as
// Server-Sent Events. This file only encodes: validation, pacing,
// cancellation and logging stay in the one stream implementation.

export interface HttpStreamOptions {
  streams: GreetingStreams;
  /** An SSE stream that wrote nothing for this long gets a ": heartbeat" comment line. Default 15000. */
  heartbeatMs?: number;
  /**
   * With tokens, a request needs one, in the Authorization header or as
   * ?access_token= (EventSource cannot send headers); else 401. Default none: open.
   */
  tokens?: BearerTokens | undefined;
}

type Format = "ndjson" | "sse";

/** The GET /stream handler, for PlainRoutes. */
export function createHttpStreamRoute(options: HttpStreamOptions): PlainHandler {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  return (req, res) => {
    const format: Format = acceptsEventStream(header(req, "accept")) ? "sse" : "ndjson";
    const call = createCallInfo({
      socket: req.socket,
      protocol: format,
      httpVersion: req.httpVersion,
      requestIdHeader: header(req, "x-request-id"),
      traceparent: header(req, "traceparent"),
      tracestate: header(req, "tracestate"),
    });
    if (req.method !== "GET") {
      sendJsonError(res, 405, "unimplemented", `method ${req.method} not allowed on /stream; use GET`, {
        allow: "GET",
        "x-request-id": call.requestId,
      });
      return;
    }
    const url = req.url ?? "/stream";
    // First, so that a caller without a token learns nothing of the rest.
    const denied = authenticate(options.tokens, {
      authorization: header(req, "authorization"),
      accessToken: options.tokens === undefined ? undefined : queryOf(url).get(accessTokenParam),
    });
    if (denied !== undefined) {
      options.streams.refuse(call, "", denied.error);
      sendAuthFailure(res, denied, { "x-request-id": call.requestId });
      return;
    }
    let request: StreamParams | undefined;
    try {
      request = parseQuery(url, format === "sse" ? header(req, "last-event-id") : undefined);
    } catch (e) {
      const error = ConnectError.from(e);
      // Logged and counted like the RPC's refusals, which the generator reports.
      options.streams.refuse(call, "", error);
      sendError(res, error, call.requestId);
      return;
    }
    if (request === undefined) {
      // EventSource reconnects after every end; 204 is the one answer that makes it stop for good.
      res.writeHead(204, { "x-request-id": call.requestId });
      res.end();
      return;
    }
    // A token may have come in the URL: keep the answer out of shared caches (RFC 6750 section 2.3).
    const cacheControl = options.tokens === undefined ? "no-cache" : "private, no-cache";
    serve({ streams: options.streams, heartbeatMs, cacheControl }, request, call, format, res);
  };
}

interface ServeOptions {
  streams: GreetingStreams;
  heartbeatMs: number;
  cacheControl: string;
}

function serve(
  { streams, heartbeatMs, cacheControl }: ServeOptions,
  request: StreamParams,
  call: CallInfo,
  format: Format,
  res: NodeResponse,
): void {
  let stream: GreetingStream | undefined;
  let wire: GreetingWire | undefined;
  let opened = false;
  let heartbeat: NodeJS.Timeout | undefined;
  let draining = false;
  const onClose = () => {
    clearInterval(heartbeat);
    stream?.cancel(new ConnectError("client disconnected", Code.Canceled));
  };
  const onDrain = () => {
    draining = false;
    stream?.resume();
  };
  res.once("close", onClose);
  const open = () => {
    opened = true;
    res.writeHead(200, {
      "content-type": format === "sse" ? "text/event-stream; charset=utf-8" : "application/x-ndjson",
      "cache-control": cacheControl,
      "x-content-type-options": "nosniff",
      // nginx buffers proxied responses unless told otherwise, which would hold every message back.
      "x-accel-buffering": "no",
      "x-request-id": call.requestId,
    });
    if (format === "sse") {
      heartbeat = setInterval(() => {
        // A blocked socket is not idle, and a heartbeat queued behind it would only grow the buffer.
        if (!draining && !res.writableEnded && !res.destroyed) res.write(": heartbeat\n");
      }, heartbeatMs);
    }
  };
  const batch = new WriteBatch<string>((chunk) => {
    if (res.destroyed) return false;
    const ok = res.write(chunk);
    heartbeat?.refresh();
    draining = !ok;
    return ok;
  }, joinStrings);
  try {
    stream = streams.start(request, call, {
      write(counter, millis) {
        if (res.destroyed) return false;
        // The status and headers leave with the first message: until then a refusal could still choose its own.
        if (!opened) open();
        const json = (wire as GreetingWire).json(counter, millis);
        return batch.add(format === "sse" ? `id: ${counter}\ndata: ${json}\n\n` : `${json}\n`);
      },
      flush: () => batch.flush(),
      end(error) {
        batch.flush();
        clearInterval(heartbeat);
        res.off("close", onClose);
        res.off("drain", onDrain);
        if (res.destroyed) return;
        if (!opened && error !== undefined) {
          sendError(res, error, call.requestId);
          return;
        }
        if (!opened) open();
        // Mid-stream the status is sent already: say why in the body's own format, then end.
        if (error !== undefined) res.write(encodeError(format, error));
        res.end();
      },
    });
  } catch (e) {
    res.off("close", onClose);
    // The stream refused the call: the status is still ours to choose.
    sendError(res, ConnectError.from(e), call.requestId);
    return;
  }
  wire = new GreetingWire(stream.name);
  res.on("drain", onDrain);
  stream.begin();
}

/** NDJSON: a last line {"error": {...}}; SSE: an "error" event. Either way the Connect error shape. */
function encodeError(format: Format, error: ConnectError): string {
  const body = { code: codeName(error.code), message: clientMessage(error) };
  return format === "sse" ? `event: error\ndata: ${JSON.stringify(body)}\n\n` : `${JSON.stringify({ error: body })}\n`;
}

function sendError(res: NodeResponse, error: ConnectError, requestId: string): void {
  const headers: Record<string, string> = { "x-request-id": requestId };
  if (error.code === Code.ResourceExhausted) headers["retry-after"] = String(retryAfterSeconds());
  // Statuses as the Connect protocol maps codes (invalid_argument 400, resource_exhausted 429, unavailable 503).
  sendJsonError(res, codeToHttpStatus(error.code), codeName(error.code), clientMessage(error), headers);
}

/**
 * Past --max-streams a slot frees only when some stream ends, and streams are
 * long: asking again at once is wasted. 5 to 15 s, drawn per answer, so that a
 * crowd refused together (clients that honour Retry-After, such as
 * curl --retry) comes back spread out rather than in one wave.
 */
function retryAfterSeconds(): number {
  return 5 + Math.floor(Math.random() * 11);
}

function acceptsEventStream(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return accept.split(",").some((range) => range.split(";", 1)[0]?.trim().toLowerCase() === "text/event-stream");
}

function header(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
