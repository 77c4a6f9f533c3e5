import { Code, type ConnectError } from "@connectrpc/connect";
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from "@opentelemetry/semantic-conventions";
import { StreamService } from "../../gen/stream/v1/stream_pb.js";
import { codeName, httpStatusOf } from "../connect-internals/codes.js";
import type { CallInfo, EndReason, StreamEnd, StreamObserver } from "../core/stream-service.js";

// One server span per call, on every road, from the one place every road
// shares: the stream observer. It continues the caller's W3C trace context
// (traceparent, tracestate) or starts a trace, and ends with the call: its
// status code, the messages sent and why it ended, all set once at the end,
// never per message. It leaves the span's ids on the CallInfo, so that the
// log observer, which runs after it, writes them on the call's lines.
//
// Attributes follow the OpenTelemetry RPC conventions as of semantic
// conventions 1.45 (rpc.system.name, a fully qualified rpc.method, a string
// rpc.status_code, error.type, network.peer.*). The names they replaced
// (rpc.system, rpc.service, rpc.grpc.status_code, rpc.connect_rpc.error_code)
// are added with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup, the conventions' own
// switch, for backends that still key on them. GET /stream is HTTP, not an
// RPC system: its span has the same name and rpc.method, no rpc.system.name,
// and the HTTP attributes instead.

/** stream.v1.StreamService/Stream: the span's name and rpc.method, on every road. */
export const streamMethod = `${StreamService.typeName}/${StreamService.method.stream.name}`;

export interface TracingObserverOptions {
  tracer: Tracer;
  /** Also write the attribute names the RPC conventions deprecated. Default false. */
  legacyAttributes?: boolean;
}

/** Whether OTEL_SEMCONV_STABILITY_OPT_IN asks for the old RPC attribute names beside the new ones. */
export function wantsLegacyRpcAttributes(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.OTEL_SEMCONV_STABILITY_OPT_IN ?? "").split(",").some((v) => v.trim() === "rpc/dup");
}

const propagator = new W3CTraceContextPropagator();

/** Reads the two headers the roads put on CallInfo. */
const callGetter: TextMapGetter<CallInfo> = {
  keys: () => ["traceparent", "tracestate"],
  get: (call, key) => (key === "traceparent" ? call.traceparent : key === "tracestate" ? call.tracestate : undefined),
};

export function createTracingObserver(options: TracingObserverOptions): StreamObserver {
  const { tracer } = options;
  const legacy = options.legacyAttributes === true;
  const start = (call: CallInfo, at: number): Span => {
    const parent: Context =
      call.traceparent === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, call, callGetter);
    const span = tracer.startSpan(
      streamMethod,
      { kind: SpanKind.SERVER, attributes: startAttributes(call, legacy), startTime: at },
      parent,
    );
    call.span = span;
    // Valid even when the sampler dropped the span: the logs still tie the call to its trace.
    call.trace = span.spanContext();
    return span;
  };
  const finish = (
    span: Span,
    call: CallInfo,
    reason: EndReason,
    sent: number,
    error: ConnectError | undefined,
    at: number,
  ) => {
    if (span.isRecording()) span.setAttributes(endAttributes(span, call, reason, sent, error, legacy));
    span.end(at);
  };
  return {
    rejected(call, _asked, error, at) {
      finish(start(call, at), call, "error", 0, error, at);
    },
    opened(call, _name, at) {
      start(call, at);
    },
    ended(call, _name, end: StreamEnd, at) {
      const span = call.span as Span | undefined;
      if (span === undefined) return;
      call.span = undefined;
      finish(span, call, end.reason, end.sent, end.error, at);
    },
  };
}

function isHttpStream(call: CallInfo): boolean {
  return call.protocol === "ndjson" || call.protocol === "sse";
}

/** What is known when the call starts (what a sampler may look at). */
function startAttributes(call: CallInfo, legacy: boolean): Attributes {
  const attributes: Attributes = {
    [ATTR_RPC_METHOD]: streamMethod,
    [ATTR_NETWORK_PROTOCOL_NAME]: "http",
    [ATTR_NETWORK_PROTOCOL_VERSION]: call.httpVersion === "2.0" ? "2" : call.httpVersion,
    "stream.protocol": call.protocol,
  };
  if (isHttpStream(call)) {
    attributes[ATTR_HTTP_REQUEST_METHOD] = "GET";
    attributes[ATTR_HTTP_ROUTE] = "/stream";
  } else {
    const grpc = call.protocol !== "connect";
    attributes[ATTR_RPC_SYSTEM_NAME] = grpc ? RPC_SYSTEM_NAME_VALUE_GRPC : "connectrpc";
    if (legacy) {
      attributes["rpc.system"] = grpc ? "grpc" : "connect_rpc";
      attributes["rpc.service"] = StreamService.typeName;
    }
  }
  const { address, port } = splitPeer(call.peer);
  attributes[ATTR_NETWORK_PEER_ADDRESS] = address;
  if (port !== undefined) attributes[ATTR_NETWORK_PEER_PORT] = port;
  return attributes;
}

/**
 * The status the call ended with, as the server reports it. Server spans are
 * errors only for the codes the conventions list (a client's mistake, such
 * as INVALID_ARGUMENT, or its cancel, is not the server's error); the code
 * itself is always in rpc.status_code.
 */
function endAttributes(
  span: Span,
  call: CallInfo,
  reason: EndReason,
  sent: number,
  error: ConnectError | undefined,
  legacy: boolean,
): Attributes {
  const code = endCode(reason, error);
  const grpc = call.protocol === "grpc" || call.protocol === "grpc-web";
  const attributes: Attributes = { "stream.end_reason": reason, "stream.messages_sent": sent };
  const status = rpcStatusCode(grpc, code);
  if (status !== undefined) attributes[ATTR_RPC_STATUS_CODE] = status;
  if (legacy && grpc) attributes["rpc.grpc.status_code"] = code;
  if (legacy && call.protocol === "connect" && code !== 0) attributes["rpc.connect_rpc.error_code"] = codeName(code);
  if (isHttpStream(call)) {
    // An error before the first message still chose the response's status; after it, 200 had left.
    attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = sent === 0 && code !== 0 ? httpStatusOf(code) : 200;
  }
  if (serverErrors.has(code)) {
    attributes[ATTR_ERROR_TYPE] = status ?? String(code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error?.rawMessage ?? status ?? String(code) });
  }
  return attributes;
}

/** The code the caller saw (0 for OK): limits end well, a cancel is the client's, a shutdown is UNAVAILABLE. */
function endCode(reason: EndReason, error: ConnectError | undefined): Code | 0 {
  switch (reason) {
    case "limit":
      return 0;
    case "cancelled":
      return Code.Canceled;
    case "deadline":
    case "send_timeout":
      return Code.DeadlineExceeded;
    case "shutdown":
    case "max_duration":
    case "max_age":
      return Code.Unavailable;
    case "error":
      return error?.code ?? Code.Unknown;
  }
}

/** The codes the gRPC and Connect conventions count as a server's errors. */
const serverErrors = new Set<Code | 0>([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/**
 * rpc.status_code as the conventions spell it: gRPC's names ("OK",
 * "CANCELLED") for gRPC and gRPC-Web; the Connect protocol's ("canceled")
 * otherwise, which has no name for success.
 */
export function rpcStatusCode(grpc: boolean, code: Code | 0): string | undefined {
  if (grpc) return grpcCodeNames[code] ?? String(code);
  return code === 0 ? undefined : codeName(code);
}

/** gRPC's names of its codes, by number (connect's Code enum has the same numbers). */
const grpcCodeNames = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** "127.0.0.1:5000" or "[::1]:5000", as CallInfo.peer writes it. */
function splitPeer(peer: string): { address: string; port: number | undefined } {
  const colon = peer.lastIndexOf(":");
  const address = peer.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(peer.slice(colon + 1));
  return { address, port: Number.isInteger(port) ? port : undefined };
}
