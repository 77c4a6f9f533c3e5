import { Code, ConnectError } from "@connectrpc/connect";
import { compressionNegotiate, createMethodSerializationLookup } from "@connectrpc/connect/protocol";
import {
  contentTypeStreamJson,
  contentTypeStreamProto,
  contentTypeStreamRegExp,
  contentTypeUnaryRegExp,
  createEndStreamSerialization,
  endStreamFlag,
  headerTimeout as headerConnectTimeoutName,
  headerStreamAcceptEncoding,
  headerStreamEncoding,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import {
  contentTypeProto as grpcContentTypeProto,
  contentTypeRegExp as grpcContentTypeRegExp,
  headerAcceptEncoding as headerGrpcAcceptEncodingName,
  headerEncoding as headerGrpcEncodingName,
  headerTimeout as headerGrpcTimeoutName,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  contentTypeProto as grpcWebContentTypeProto,
  contentTypeRegExp as grpcWebContentTypeRegExp,
  trailerFlag,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { type StreamRequest, StreamService } from "../../gen/stream/v1/stream_pb.js";

// Everything the lean RPC road takes from connect-es that is not its public
// API: private exports, which connect does not keep stable across versions
// ("we recommend that you do so with an exact version constraint"), and the
// texts and choices of connect's gRPC, gRPC-Web and Connect handlers that the
// lean road must reproduce byte for byte. Only this folder imports connect's
// private entry points (test/architecture.test.ts holds the rule); constants
// connect exports are imported, never copied. package.json pins
// @connectrpc/connect and -node exactly; test/connect-internals.test.ts and
// test/lean-rpc.test.ts fail when an upgrade changes any of it, and
// docs/architecture.md says what to do then.

export { compressionNegotiate, parseConnectTimeout, parseTimeout, setTrailerStatus };

/** Request content types connect's gRPC-Web handler reads as binary (no +json, no -text), as clients spell them. */
export const grpcWebContentTypes: readonly string[] = ["application/grpc-web", grpcWebContentTypeProto];
/** gRPC-Web's text mode (base64 of the binary framing), as clients spell it: connect-node answers it 415. */
export const grpcWebTextContentTypes: readonly string[] = [
  "application/grpc-web-text",
  "application/grpc-web-text+proto",
];
/** The response content type of gRPC-Web's text mode, as Envoy's gRPC-Web filter answers it. */
export const grpcWebTextResponseContentType = "application/grpc-web-text+proto";
/** The response content-type of connect's gRPC-Web handler for binary requests (contentTypeProto). */
export const grpcWebResponseContentType = grpcWebContentTypeProto;
/** Connect's streaming content types: the response echoes the request's. */
export const connectStreamProto = contentTypeStreamProto;
export const connectStreamJson = contentTypeStreamJson;
/** Connect's streaming header names, lower-cased as Node hands them over. */
export const headerConnectTimeout = headerConnectTimeoutName.toLowerCase();
export const headerConnectEncoding = headerStreamEncoding.toLowerCase();
export const headerConnectAcceptEncoding = headerStreamAcceptEncoding.toLowerCase();
/** connect passes this spelling to compressionNegotiate for the metadata of its error. */
export const headerConnectAcceptEncodingCanonical = headerStreamAcceptEncoding;
/** The flags of the last envelope: a Connect end-of-stream message, gRPC-Web trailers; a request envelope with them is skipped. */
export { endStreamFlag, trailerFlag };

/**
 * The last envelope of a gRPC-Web response: its trailers in the body, as
 * connect's gRPC-Web handler writes them (grpc-status 0, or the error's
 * status and message).
 */
export function grpcWebTrailers(error: ConnectError | undefined): Uint8Array {
  const trailer = new Headers({ "grpc-status": "0" });
  if (error !== undefined) setTrailerStatus(trailer, error);
  return trailerSerialize(trailer);
}

const endStream = createEndStreamSerialization(undefined);

/** The last envelope of a Connect streaming response: `{}`, or `{"error": {...}}`, as connect's handler writes it. */
export function connectEndStream(error: ConnectError | undefined): Uint8Array {
  return endStream.serialize(error === undefined ? { metadata: new Headers() } : { metadata: new Headers(), error });
}

/**
 * Why a call's signal aborts when its HTTP/2 stream closes before the call
 * ended, as connect-node's universalRequestFromNodeRequest says it: the reset
 * code as a ConnectError, or, for NO_ERROR and STREAM_CLOSED, a plain
 * AbortError (AbortController.abort() without a reason).
 */
export function closedStreamReason(rstCode: number): unknown {
  // One per code, made once: 50,000 streams closed together each made its own, stack trace and all.
  let reason = closedReasons.get(rstCode);
  if (reason === undefined) {
    reason = errorFromH2ResetCode(rstCode) ?? new DOMException("This operation was aborted", "AbortError");
    // The codes RFC 9113 defines; a peer's made-up code is not kept.
    if (rstCode <= 0xd) closedReasons.set(rstCode, reason);
  }
  return reason;
}

const closedReasons = new Map<number, unknown>();

// One behaviour is copied rather than borrowed: connect's handlers send the
// response headers with the first message (or the error), never before ("we
// deliberately send headers after first read, not before, because we have to
// give the implementation a chance to set response headers"). The lean path
// sends them from its sink's first write; test/connect-internals.test.ts holds
// connect-node and the lean path to it.

/**
 * Whether connect-node (or, for gRPC-Web text, the lean road) speaks a
 * request of this content type to a method of this kind: connect's own
 * content type patterns, by protocol.
 */
export function takesContentType(contentType: string | undefined, streaming: boolean): boolean {
  if (contentType === undefined) return false;
  const connect = streaming ? contentTypeStreamRegExp : contentTypeUnaryRegExp;
  return (
    connect.test(contentType) || grpcContentTypeRegExp.test(contentType) || grpcWebContentTypeRegExp.test(contentType)
  );
}

/** The content types a method of this kind takes, as a 415 names them. */
export function contentTypesTaken(streaming: boolean): string[] {
  const connect = streaming
    ? [contentTypeStreamProto, contentTypeStreamJson]
    : ["application/proto", "application/json"];
  return [
    ...connect,
    "application/grpc",
    grpcContentTypeProto,
    "application/grpc-web",
    grpcWebContentTypeProto,
    "application/grpc-web-text",
  ];
}

/** The path connect's router serves Stream on (createMethodUrl). */
export const streamPath = `/${StreamService.typeName}/${StreamService.method.stream.name}`;

/** Request content types connect's gRPC handler reads as binary (contentTypeRegExp), in the spelling clients send. */
export const binaryContentTypes: readonly string[] = ["application/grpc", grpcContentTypeProto];

/** The response content-type connect's gRPC handler sends for binary requests (contentTypeProto). */
export const responseContentType = grpcContentTypeProto;

/** Header names of the gRPC protocol, lower-cased as HTTP/2 carries them. */
export const headerGrpcEncoding = headerGrpcEncodingName.toLowerCase();
export const headerGrpcAcceptEncoding = headerGrpcAcceptEncodingName.toLowerCase();
export const headerGrpcTimeout = headerGrpcTimeoutName.toLowerCase();
/** connect passes this spelling to compressionNegotiate for the metadata of its error. */
export const headerGrpcAcceptEncodingCanonical = headerGrpcAcceptEncodingName;

/** Where each protocol family carries its timeout, read with connect's own parser. */
export const grpcTimeout = { header: headerGrpcTimeout, parse: parseTimeout } as const;
export const connectTimeout = { header: headerConnectTimeout, parse: parseConnectTimeout } as const;

/** The trailer of a stream that ended well (grpcStatusOk). */
export const trailerOk = Object.freeze({ "grpc-status": "0" });

/** What connectNodeAdapter accepts when acceptCompression is not given. */
export const defaultAcceptCompression = [compressionGzip, compressionBrotli];

/** connect compresses a response message only from this size on (defaultCompressMinBytes). */
export const compressMinBytes = 1024;

/** connect's handler option maxTimeoutMs when not given (validateUniversalHandlerOptions). */
export const defaultMaxTimeoutMs = Number.MAX_SAFE_INTEGER;

/** The envelope flag of a compressed message (compressedFlag). */
export const compressedFlag = 0b00000001;

/**
 * The request parser connect's handlers use, with its readMaxBytes and its
 * errors ("parse binary: ...", or for JSON "cannot decode message ...").
 */
export function createRequestParser(readMaxBytes: number, binary = true): (data: Uint8Array) => StreamRequest {
  const lookup = createMethodSerializationLookup(StreamService.method.stream, undefined, undefined, {
    readMaxBytes,
    writeMaxBytes: 0xffffffff,
  });
  const parse = lookup.getI(binary);
  return (data) => parse.parse(data);
}

/** transformSplitEnvelope / assertReadMaxBytes: an envelope that announces more than readMaxBytes. */
export function envelopeTooLarge(length: number, readMaxBytes: number): ConnectError {
  return new ConnectError(
    `message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`,
    Code.ResourceExhausted,
  );
}

/** transformSplitEnvelope: the body ended inside an envelope. */
export function incompleteEnvelope(): ConnectError {
  return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
}

/** envelopeDecompress without a request compression. */
export function compressedWithoutEncoding(): ConnectError {
  return new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
}

/** ensureSingle in invoke-implementation.js: no request message. */
export function missingInput(): ConnectError {
  return new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
}

/** ensureSingle in invoke-implementation.js: a second request message. */
export function extraInput(): ConnectError {
  return new ConnectError(
    "protocol error: received extra input message for server-streaming method",
    Code.Unimplemented,
  );
}

/** createDeadlineSignal: the reason a call's signal aborts with when grpc-timeout passes. */
export function deadlineExceeded(): ConnectError {
  return new ConnectError("the operation timed out", Code.DeadlineExceeded);
}

/** transformCatchFinally in the gRPC handler: what the client sees of an error that is no ConnectError. */
export function internalError(cause: unknown): ConnectError {
  return new ConnectError("internal error", Code.Internal, undefined, undefined, cause);
}

// RST_STREAM codes (RFC 9113 section 7) as connect-node's node-error.js maps them.
const h2CodeNames: Record<number, string> = {
  1: "PROTOCOL_ERROR",
  2: "INTERNAL_ERROR",
  3: "FLOW_CONTROL_ERROR",
  4: "SETTINGS_TIMEOUT",
  6: "FRAME_SIZE_ERROR",
  7: "REFUSED_STREAM",
  8: "CANCEL",
  9: "COMPRESSION_ERROR",
  10: "CONNECT_ERROR",
  11: "ENHANCE_YOUR_CALM",
  12: "INADEQUATE_SECURITY",
  13: "HTTP_1_1_REQUIRED",
};
const h2CodeToConnect: Record<number, Code> = {
  1: Code.Internal,
  2: Code.Internal,
  3: Code.Internal,
  4: Code.Internal,
  6: Code.Internal,
  7: Code.Unavailable,
  8: Code.Canceled,
  9: Code.Internal,
  10: Code.Internal,
  11: Code.ResourceExhausted,
  12: Code.PermissionDenied,
  13: Code.PermissionDenied,
};

/**
 * connect-node's connectErrorFromH2ResetCode (node-error.js, not exported):
 * the reason a handler's signal aborts with when the client resets the stream.
 * Undefined for NO_ERROR and STREAM_CLOSED, which connect-node leaves unmapped.
 */
export function errorFromH2ResetCode(rstCode: number): ConnectError | undefined {
  const code = h2CodeToConnect[rstCode];
  if (code === undefined) return undefined;
  return new ConnectError(
    `http/2 stream closed with error code ${h2CodeNames[rstCode]} (0x${rstCode.toString(16)})`,
    code,
  );
}
