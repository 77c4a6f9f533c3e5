import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type StreamRequest,
  StreamRequestSchema,
  type StreamResponse,
  StreamResponseSchema,
} from "../../gen/stream/v1/stream_pb.js";

// A plain @grpc/grpc-js client for Stream, with our generated schemas as its
// (de)serializers: the gRPC library most Node services use, not Connect.

const StreamClient = grpc.makeGenericClientConstructor(
  {
    stream: {
      path: "/stream.v1.StreamService/Stream",
      requestStream: false,
      responseStream: true,
      requestSerialize: (r: StreamRequest) => Buffer.from(toBinary(StreamRequestSchema, r)),
      requestDeserialize: (b: Buffer) => fromBinary(StreamRequestSchema, b),
      responseSerialize: (r: StreamResponse) => Buffer.from(toBinary(StreamResponseSchema, r)),
      responseDeserialize: (b: Buffer) => fromBinary(StreamResponseSchema, b),
    },
  },
  "StreamService",
);

export function grpcJsClient(port: number, credentials = grpc.credentials.createInsecure()): grpc.Client {
  return new StreamClient(`127.0.0.1:${port}`, credentials);
}

export type StreamRequestInit = Partial<Omit<StreamRequest, "$typeName">>;

export function grpcJsStream(
  client: grpc.Client,
  request: StreamRequestInit,
  options: grpc.CallOptions = {},
  metadata: grpc.Metadata = new grpc.Metadata(),
): grpc.ClientReadableStream<StreamResponse> {
  return (
    client as unknown as {
      stream: (r: StreamRequest, m: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientReadableStream<StreamResponse>;
    }
  ).stream(create(StreamRequestSchema, request), metadata, options);
}

/** Every message, then the error if the call did not end OK. */
export function collect(
  stream: grpc.ClientReadableStream<StreamResponse>,
): Promise<{ messages: StreamResponse[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const messages: StreamResponse[] = [];
    stream.on("data", (m: StreamResponse) => messages.push(m));
    stream.on("error", (error: grpc.ServiceError) => resolve({ messages, error }));
    stream.on("end", () => resolve({ messages }));
  });
}
