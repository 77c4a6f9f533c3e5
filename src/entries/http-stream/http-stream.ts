import { Code, ConnectError } from "@connectrpc/connect";
import { codeName, httpStatusOf } from "../../connect-internals/codes.js";
import { clientMessage } from "../../core/errors.js";
import type { StreamParams } from "../../core/greeting.js";
import type { Admission, GreetingStream, GreetingStreams } from "../../core/stream-service.js";
import { type Exchange, type NodeRequest, type NodeResponse, sendJsonError } from "../../http/exchange.js";
import type { Road, Route } from "../../http/road.js";
import { GreetingWire } from "../kit/greeting-wire.js";
import { WriteBatch } from "../kit/write-batch.js";
import { askedOf, parseQuery } from "./query.js";

// The GET /stream road, for curl and EventSource: the query string becomes
// the same StreamParams the RPC carries, and the messages come from the same
// stream, written as NDJSON or, with "Accept: text/event-stream", as
// Server-Sent Events. This file only encodes: validation, pacing,
// cancellation and logging stay in the one stream implementation, and the
// token (in the Authorization header or as ?access_token=) is the front
// door's to check.

export interface HttpStreamOptions {
  streams: GreetingStreams;
  /** An SSE stream that wrote nothing for this long gets a ": heartbeat" comment line. Default 15000. */
  heartbeatMs?: number;
  /** A token may come in the URL (EventSource): keep answers out of shared caches. Default false. */
  tokens?: boolean;
}

type Format = "ndjson" | "sse";

export function createHttpStreamRoad(options: HttpStreamOptions): Road {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  // RFC 6750 section 2.3: a response to a request that may carry its token in the URL is private.
  const cacheControl = options.tokens === true ? "private, no-cache" : "no-cache";
  const route: Route = {
    auth: "bearer-or-query",
    stream: true,
    raw: false,
    asked: (x) => askedOf(x.head.target),
    protocol: (head) => formatOf(head.headers.accept),
    serve: (x) => {
      const t = x.transport;
      if (t.kind === "node") serveRequest(options.streams, x, t.req, t.res, heartbeatMs, cacheControl);
    },
    refuse: (x, error) => {
      const t = x.transport;
      if (t.kind === "node") sendError(t.res, error);
    },
  };
  return { name: "GET /stream", route: (head) => (head.path === "/stream" ? route : undefined) };
}

function serveRequest(
  streams: GreetingStreams,
  x: Exchange,
  req: NodeRequest,
  res: NodeResponse,
  heartbeatMs: number,
  cacheControl: string,
): void {
  const format = x.call.protocol as Format;
  if (req.method !== "GET") {
    sendJsonError(res, 405, "unimplemented", `method ${req.method} not allowed on /stream; use GET`, { allow: "GET" });
    return;
  }
  let request: StreamParams | undefined;
  let admission: Admission;
  try {
    request = parseQuery(x.head.target, format === "sse" ? header(req, "last-event-id") : undefined);
    if (request === undefined) {
      // EventSource reconnects after every end; 204 is the one answer that makes it stop for good.
      res.writeHead(204);
      res.end();
      return;
    }
    admission = streams.admit(request, x.call);
  } catch (e) {
    const error = ConnectError.from(e);
    // A query that did not parse never reached admit(): log and count it like the refusals admit() makes.
    if (request === undefined) streams.refuse(x.call, askedOf(x.head.target), error);
    sendError(res, error);
    return;
  }
  new HttpStream(streams, admission, format, res, heartbeatMs, cacheControl).begin();
}

/** One NDJSON or SSE stream: its headers, batches, heartbeat and end. */
class HttpStream {
  private readonly stream: GreetingStream;
  private readonly wire: GreetingWire;
  private readonly batch: WriteBatch;
  private opened = false;
  private draining = false;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    streams: GreetingStreams,
    admission: Admission,
    private readonly format: Format,
    private readonly res: NodeResponse,
    private readonly heartbeatMs: number,
    private readonly cacheControl: string,
  ) {
    this.wire = new GreetingWire(admission.plan.name);
    this.batch = new WriteBatch((chunk) => {
      if (res.destroyed) return false;
      const ok = res.write(chunk);
      this.heartbeat?.refresh();
      this.draining = !ok;
      return ok;
    });
    this.stream = streams.start(admission, {
      write: (counter, millis) => this.write(counter, millis),
      flush: () => this.batch.flush(),
      end: (error) => this.end(error),
      // Its connection goes with it: the kernel's buffers hold what the peer never read.
      abort: () => {
        this.stop();
        res.destroy();
        return true;
      },
    });
  }

  begin(): void {
    this.res.once("close", this.onClose);
    this.res.on("drain", this.onDrain);
    this.stream.begin();
  }

  private readonly onClose = () => {
    clearInterval(this.heartbeat);
    this.stream.cancel(new ConnectError("client disconnected", Code.Canceled));
  };

  private readonly onDrain = () => {
    this.draining = false;
    this.stream.resume();
  };

  private write(counter: bigint, millis: number): boolean {
    if (this.res.destroyed) return false;
    // The status and headers leave with the first message: until then a refusal could still choose its own.
    this.open();
    const buffer = this.batch.room();
    let o = this.batch.used;
    if (this.format === "sse") o += buffer.write(`id: ${counter}\ndata: `, o, "latin1");
    o = this.wire.jsonInto(buffer, o, counter, millis);
    o += buffer.write(this.format === "sse" ? "\n\n" : "\n", o, "latin1");
    return this.batch.commit(o);
  }

  private open(): void {
    if (this.opened) return;
    this.opened = true;
    const sse = this.format === "sse";
    this.res.writeHead(200, {
      "content-type": sse ? "text/event-stream; charset=utf-8" : "application/x-ndjson",
      "cache-control": this.cacheControl,
      "x-content-type-options": "nosniff",
      // nginx buffers proxied responses unless told otherwise, which would hold every message back.
      "x-accel-buffering": "no",
    });
    if (!sse) return;
    this.heartbeat = setInterval(() => {
      // A blocked socket is not idle, and a heartbeat queued behind it would only grow the buffer.
      if (!this.draining && !this.res.writableEnded && !this.res.destroyed) this.res.write(": heartbeat\n");
    }, this.heartbeatMs);
  }

  private end(error: ConnectError | undefined): void {
    this.batch.flush();
    this.stop();
    if (this.res.destroyed) return;
    if (!this.opened && error !== undefined) {
      sendError(this.res, error);
      return;
    }
    this.open();
    // Mid-stream the status is sent already: say why in the body's own format, then end.
    if (error !== undefined) this.res.write(encodeError(this.format, error));
    this.res.end();
  }

  private stop(): void {
    clearInterval(this.heartbeat);
    this.res.off("close", this.onClose);
    this.res.off("drain", this.onDrain);
  }
}

/** NDJSON: a last line {"error": {...}}; SSE: an "error" event. Either way the Connect error shape. */
function encodeError(format: Format, error: ConnectError): string {
  const body = { code: codeName(error.code), message: clientMessage(error) };
  return format === "sse" ? `event: error\ndata: ${JSON.stringify(body)}\n\n` : `${JSON.stringify({ error: body })}\n`;
}

function sendError(res: NodeResponse, error: ConnectError): void {
  const headers: Record<string, string> = {};
  if (error.code === Code.ResourceExhausted) headers["retry-after"] = String(retryAfterSeconds());
  // Statuses as the Connect protocol maps codes (invalid_argument 400, resource_exhausted 429, unavailable 503).
  sendJsonError(res, httpStatusOf(error.code), codeName(error.code), clientMessage(error), headers);
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

/** Server-Sent Events for a client that accepts them (EventSource), NDJSON for the rest. */
function formatOf(accept: string | string[] | undefined): Format {
  const ranges = Array.isArray(accept) ? accept.join(",") : accept;
  if (ranges === undefined) return "ndjson";
  const sse = ranges.split(",").some((range) => range.split(";", 1)[0]?.trim().toLowerCase() === "text/event-stream");
  return sse ? "sse" : "ndjson";
}

function header(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
