import type { ConnectError } from "@connectrpc/connect";
import {
  binaryContentTypes,
  connectEndStream,
  connectStreamJson,
  connectStreamProto,
  connectTimeout,
  endStreamFlag,
  grpcTimeout,
  grpcWebContentTypes,
  grpcWebResponseContentType,
  grpcWebTextContentTypes,
  grpcWebTextResponseContentType,
  grpcWebTrailers,
  headerConnectAcceptEncoding,
  headerConnectAcceptEncodingCanonical,
  headerConnectEncoding,
  headerGrpcAcceptEncoding,
  headerGrpcAcceptEncodingCanonical,
  headerGrpcEncoding,
  responseContentType,
  trailerFlag,
} from "../../connect-internals/protocol.js";
import type { TimeoutReader } from "../../http/road.js";
import type { GreetingWire } from "../kit/greeting-wire.js";

// The three RPC protocols the lean path speaks for Stream, as data: what
// differs between gRPC, gRPC-Web and Connect is the content type, the names of
// a few headers, how a message is encoded, and how the stream ends (HTTP/2
// trailers, or a last envelope in the body). The engine (serve-rpc.ts) is one.

export interface RpcProtocol {
  /** As logs and metrics name it. */
  readonly name: "grpc" | "grpc-web" | "connect";
  /** The response content type. */
  readonly contentType: string;
  /** False for Connect JSON only. */
  readonly binary: boolean;
  /** Where the protocol carries its timeout: the front door's deadline policy reads it. */
  readonly timeout: TimeoutReader;
  readonly encodingHeader: string;
  readonly acceptEncodingHeader: string;
  /** The spelling connect passes to compressionNegotiate. */
  readonly acceptEncodingCanonical: string;
  /** Request envelopes with this flag are skipped, as connect's handler skips them; 0 for none. */
  readonly skipFlag: number;
  /** gRPC ends with HTTP/2 trailers; the others with a last envelope in the body. */
  readonly httpTrailers: boolean;
  /** gRPC-Web text: the body is base64 both ways (base64-text.ts). */
  readonly text: boolean;
  /** The last envelope of the body, or undefined for gRPC. */
  tail(error: ConnectError | undefined): Buffer | undefined;
  /** Writes one message, in its envelope, at `o` (MAX_MESSAGE_BYTES free there); returns where it ends. */
  encode(wire: GreetingWire, buf: Buffer, o: number, counter: bigint, millis: number): number;
}

const grpcHeaders = {
  timeout: grpcTimeout,
  encodingHeader: headerGrpcEncoding,
  acceptEncodingHeader: headerGrpcAcceptEncoding,
  acceptEncodingCanonical: headerGrpcAcceptEncodingCanonical,
} as const;

const binaryMessage = (wire: GreetingWire, buf: Buffer, o: number, counter: bigint, millis: number) =>
  wire.envelopeInto(buf, o, counter, millis);

const grpc: RpcProtocol = {
  name: "grpc",
  contentType: responseContentType,
  binary: true,
  ...grpcHeaders,
  skipFlag: 0,
  httpTrailers: true,
  text: false,
  tail: () => undefined,
  encode: binaryMessage,
};

const grpcWeb: RpcProtocol = {
  name: "grpc-web",
  contentType: grpcWebResponseContentType,
  binary: true,
  ...grpcHeaders,
  skipFlag: trailerFlag,
  httpTrailers: false,
  text: false,
  tail: (error) => envelope(trailerFlag, grpcWebTrailers(error)),
  encode: binaryMessage,
};

/** gRPC-Web text: the frames of grpcWeb, in base64. connect-node does not speak it (415 with --fast-path off). */
const grpcWebText: RpcProtocol = {
  ...grpcWeb,
  contentType: grpcWebTextResponseContentType,
  text: true,
};

const connectHeaders = {
  timeout: connectTimeout,
  encodingHeader: headerConnectEncoding,
  acceptEncodingHeader: headerConnectAcceptEncoding,
  acceptEncodingCanonical: headerConnectAcceptEncodingCanonical,
  skipFlag: endStreamFlag,
  httpTrailers: false,
  text: false,
  tail: (error: ConnectError | undefined) => envelope(endStreamFlag, connectEndStream(error)),
  name: "connect",
} as const;

const connectProto: RpcProtocol = {
  ...connectHeaders,
  contentType: connectStreamProto,
  binary: true,
  encode: binaryMessage,
};

const connectJson: RpcProtocol = {
  ...connectHeaders,
  contentType: connectStreamJson,
  binary: false,
  encode(wire, buf, o, counter, millis) {
    const end = wire.jsonInto(buf, o + 5, counter, millis);
    buf[o] = 0;
    buf.writeUInt32BE(end - o - 5, o + 1);
    return end;
  },
};

/** Every protocol the lean road speaks. */
export const rpcProtocols: readonly RpcProtocol[] = [grpc, grpcWeb, grpcWebText, connectProto, connectJson];

/**
 * The protocol of a request by its content type, as clients spell it, when
 * the lean path speaks it on this HTTP version (gRPC needs HTTP/2).
 */
export function protocolOf(contentType: string | undefined, http2: boolean): RpcProtocol | undefined {
  if (contentType === undefined) return undefined;
  if (binaryContentTypes.includes(contentType)) return http2 ? grpc : undefined;
  if (grpcWebContentTypes.includes(contentType)) return grpcWeb;
  if (grpcWebTextContentTypes.includes(contentType)) return grpcWebText;
  if (contentType === connectStreamProto) return connectProto;
  if (contentType === connectStreamJson) return connectJson;
  return undefined;
}

function envelope(flags: number, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(5 + payload.byteLength);
  buf[0] = flags;
  buf.writeUInt32BE(payload.byteLength, 1);
  buf.set(payload, 5);
  return buf;
}
