import { type CallOptions, type Code, ConnectError } from "@connectrpc/connect";
import type { GrpcWebClientBase, Metadata, RpcError } from "grpc-web";
import type { StreamCaller, StreamRequest, StreamResponse } from "../../packages/client/src/index.js";
import { StreamRequestMessage, type StreamResponseMessage, streamMethod } from "./stream-method.js";

// Google's grpc-web client under the client package's resumeStream(): each
// attempt is one grpc-web call, its events turned into an async iterable,
// its errors into ConnectErrors (gRPC's codes are Connect's numbers), so the
// same resume rules (start_at, backoff, deadline) apply as to Connect's own
// clients.

/** A StreamCaller on a grpc-web client for the server at `hostname` (http://host:port). */
export function grpcWebCaller(client: GrpcWebClientBase, hostname: string): StreamCaller {
  return { stream: (request, options) => call(client, hostname, request, options) };
}

async function* call(
  client: GrpcWebClientBase,
  hostname: string,
  request: StreamRequest,
  options: CallOptions,
): AsyncGenerator<StreamResponse> {
  const metadata: Metadata = {};
  new Headers(options.headers).forEach((value, key) => {
    metadata[key] = value;
  });
  // grpc-web's deadline is an absolute time in ms, sent as grpc-timeout.
  if (options.timeoutMs !== undefined) metadata.deadline = String(Date.now() + options.timeoutMs);
  const stream = client.serverStreaming(
    `${hostname}${streamMethod.getName()}`,
    new StreamRequestMessage(request),
    metadata,
    streamMethod,
  );
  // grpc-web pushes (XMLHttpRequest has no backpressure); the queue holds
  // what arrived until the reader pulls it, one interval's worth at a time.
  const queue: StreamResponse[] = [];
  let end: { error?: ConnectError } | undefined;
  let wake = () => {};
  stream.on("data", (response: StreamResponseMessage) => {
    queue.push(response.message);
    wake();
  });
  stream.on("error", (e: RpcError) => {
    end = { error: new ConnectError(e.message, e.code as number as Code) };
    wake();
  });
  stream.on("end", () => {
    end ??= {};
    wake();
  });
  const cancel = () => stream.cancel();
  options.signal?.addEventListener("abort", cancel);
  try {
    for (;;) {
      const next = queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (end !== undefined) {
        if (end.error !== undefined) throw end.error;
        return;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    options.signal?.removeEventListener("abort", cancel);
    stream.cancel();
  }
}
