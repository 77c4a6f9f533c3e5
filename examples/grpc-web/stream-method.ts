import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { MethodDescriptor, MethodType } from "grpc-web";
import {
  type StreamRequest,
  StreamRequestSchema,
  type StreamResponse,
  StreamResponseSchema,
  StreamService,
} from "../../packages/client/src/index.js";

// The method descriptor that protoc-gen-grpc-web would generate, built on
// protobuf-es instead: grpc-web only needs a serializer for the request and
// a deserializer for the response, in the shape of google-protobuf's classes
// (serializeBinary(), static deserializeBinary()). So no protoc plugin and no
// google-protobuf: the messages are the client package's.

/** A StreamRequest as grpc-web handles a request: an object that serializes itself. */
export class StreamRequestMessage {
  constructor(readonly message: StreamRequest) {}
  serializeBinary(): Uint8Array {
    return toBinary(StreamRequestSchema, this.message);
  }
}

/** A StreamResponse as grpc-web makes a response: from its bytes, by a static deserializeBinary(). */
export class StreamResponseMessage {
  constructor(readonly message: StreamResponse) {}
  static deserializeBinary(bytes: Uint8Array): StreamResponseMessage {
    return new StreamResponseMessage(fromBinary(StreamResponseSchema, bytes));
  }
}

/** "/stream.v1.StreamService/Stream", server streaming. */
export const streamMethod = new MethodDescriptor(
  `/${StreamService.typeName}/${StreamService.method.stream.name}`,
  MethodType.SERVER_STREAMING,
  StreamRequestMessage as new (
    ...args: unknown[]
  ) => StreamRequestMessage,
  StreamResponseMessage as new (
    ...args: unknown[]
  ) => StreamResponseMessage,
  (request: StreamRequestMessage) => request.serializeBinary(),
  StreamResponseMessage.deserializeBinary,
);
