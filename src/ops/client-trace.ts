import { randomBytes } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import {
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from "@opentelemetry/semantic-conventions";
import { rpcStatusCode, streamMethod } from "./tracing.js";

// The Node client's side of a trace: one trace for the whole logical stream,
// across every reconnection, so that the server's spans of each attempt sit
// in it. With a tracer (OTEL_EXPORTER_OTLP_ENDPOINT set) that is a CLIENT
// span, exported; without one, a traceparent of our own making, sampled, so
// that a traced server still records its side under one trace id.

export interface ClientTrace {
  /** The traceparent (and tracestate) to send with every attempt. */
  readonly headers: Record<string, string>;
  readonly traceId: string;
  /** Ends the client span, if any: with the call's error, or OK. */
  end(error?: unknown): void;
}

export interface ClientTraceOptions {
  /** Default none: no span, a fresh traceparent. */
  tracer?: Tracer | undefined;
  /** "grpc", "grpcweb" or "connect", as --protocol says. */
  protocol: string;
  url: string;
}

const propagator = new W3CTraceContextPropagator();

export function startClientTrace(options: ClientTraceOptions): ClientTrace {
  if (options.tracer === undefined) {
    const traceId = randomBytes(16).toString("hex");
    return { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` }, traceId, end() {} };
  }
  const url = new URL(options.url);
  const grpc = options.protocol !== "connect";
  const span: Span = options.tracer.startSpan(streamMethod, {
    kind: SpanKind.CLIENT,
    attributes: {
      [ATTR_RPC_SYSTEM_NAME]: grpc ? "grpc" : "connectrpc",
      [ATTR_RPC_METHOD]: streamMethod,
      [ATTR_SERVER_ADDRESS]: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      [ATTR_SERVER_PORT]: Number(url.port || (url.protocol === "https:" ? 443 : 80)),
    },
  });
  const headers: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
  return {
    headers,
    traceId: span.spanContext().traceId,
    end(error) {
      const code = error === undefined ? 0 : ConnectError.from(error).code;
      const status = rpcStatusCode(grpc, code);
      if (status !== undefined) span.setAttribute(ATTR_RPC_STATUS_CODE, status);
      // A client counts every code but OK as an error (a stop the user asked for ends without one).
      if (code !== 0) {
        span.setAttribute(ATTR_ERROR_TYPE, status ?? String(code));
        span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(error).rawMessage });
      }
      span.end();
    },
  };
}
