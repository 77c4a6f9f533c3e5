import { once } from "node:events";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { fromBinary } from "@bufbuild/protobuf";
import { ExportTraceServiceRequestSchema } from "../otlp/gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import type { KeyValue } from "../otlp/gen/opentelemetry/proto/common/v1/common_pb.js";

// A real OTLP/HTTP trace receiver on loopback, as a collector would be: it
// takes POST /v1/traces in either encoding the exporters send (protobuf,
// decoded with the messages generated from opentelemetry-proto under
// test/otlp/, or OTLP/JSON), and keeps every span it was sent.

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  /** Lowercase hex; parentSpanId is "" for a root span. */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  /** 1 INTERNAL, 2 SERVER, 3 CLIENT. */
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** code: 0 UNSET, 1 OK, 2 ERROR. */
  status: { code: number; message: string };
  startNs: bigint;
  endNs: bigint;
  resource: Record<string, AttributeValue>;
  scope: string;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:PORT: the value of OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** One entry per export request: its content type and user agent. */
  readonly requests: { contentType: string; userAgent: string }[];
  /** Resolves with the spans of `traceId` once there are `count` of them; rejects after `timeoutMs`. */
  waitForTrace(traceId: string, count?: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver["requests"] = [];
  const waiters = new Set<() => void>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const contentType = String(req.headers["content-type"] ?? "");
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      try {
        const json = contentType.startsWith("application/json");
        spans.push(...(json ? fromOtlpJson(JSON.parse(body.toString("utf8"))) : fromOtlpProtobuf(body)));
        requests.push({ contentType, userAgent: String(req.headers["user-agent"] ?? "") });
        // An empty ExportTraceServiceResponse, in the request's encoding.
        res.writeHead(200, { "content-type": json ? "application/json" : "application/x-protobuf" });
        res.end(json ? "{}" : undefined);
      } catch (e) {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end(`undecodable export: ${e instanceof Error ? e.message : String(e)}`);
      }
      for (const w of waiters) w();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests,
    waitForTrace(traceId, count = 1, timeoutMs = 10_000) {
      const found = () => spans.filter((s) => s.traceId === traceId);
      return new Promise((resolve, reject) => {
        const check = () => {
          if (found().length < count) return;
          done();
          resolve(found());
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms: ${found().length} of ${count} spans of trace ${traceId}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

function protobufAttributes(list: KeyValue[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list) {
    const v = value?.value;
    if (v === undefined || v.case === undefined) continue;
    if (v.case === "stringValue" || v.case === "boolValue" || v.case === "doubleValue") out[key] = v.value;
    else if (v.case === "intValue") out[key] = Number(v.value);
  }
  return out;
}

function fromOtlpProtobuf(body: Uint8Array): ReceivedSpan[] {
  const request = fromBinary(ExportTraceServiceRequestSchema, body);
  return request.resourceSpans.flatMap((rs) =>
    rs.scopeSpans.flatMap((ss) =>
      ss.spans.map((s) => ({
        traceId: hex(s.traceId),
        spanId: hex(s.spanId),
        parentSpanId: hex(s.parentSpanId),
        traceState: s.traceState,
        name: s.name,
        kind: s.kind,
        attributes: protobufAttributes(s.attributes),
        status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
        startNs: s.startTimeUnixNano,
        endNs: s.endTimeUnixNano,
        resource: protobufAttributes(rs.resource?.attributes ?? []),
        scope: ss.scope?.name ?? "",
      })),
    ),
  );
}

// OTLP/JSON is not protobuf's JSON mapping (ids are hex, not base64; enums
// are numbers), so it is read by hand, field by field, as the spec writes it.
interface JsonKeyValue {
  key: string;
  value: { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: JsonKeyValue[];
  status?: { code?: number; message?: string };
}
interface JsonRequest {
  resourceSpans: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans: { scope?: { name?: string }; spans: JsonSpan[] }[];
  }[];
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) {
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
  }
  return out;
}

function fromOtlpJson(request: JsonRequest): ReceivedSpan[] {
  return request.resourceSpans.flatMap((rs) =>
    rs.scopeSpans.flatMap((ss) =>
      ss.spans.map((s) => ({
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId ?? "",
        traceState: s.traceState ?? "",
        name: s.name,
        kind: s.kind,
        attributes: jsonAttributes(s.attributes),
        status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
        startNs: BigInt(s.startTimeUnixNano),
        endNs: BigInt(s.endTimeUnixNano),
        resource: jsonAttributes(rs.resource?.attributes),
        scope: ss.scope?.name ?? "",
      })),
    ),
  );
}
