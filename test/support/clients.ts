import { type Client, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { StreamService } from "../../gen/stream/v1/stream_pb.js";

// Every protocol x HTTP version pair the server must speak, so that no
// protocol is tested by luck: tests loop over this table.

export interface ClientCase {
  name: string;
  protocol: "connect" | "grpc" | "grpc-web";
  httpVersion: "1.1" | "2";
  binary: boolean;
  transport(baseUrl: string): Transport;
}

export const clientCases: ClientCase[] = [
  {
    name: "gRPC over HTTP/2",
    protocol: "grpc",
    httpVersion: "2",
    binary: true,
    transport: (baseUrl) => createGrpcTransport({ baseUrl }),
  },
  ...(["1.1", "2"] as const).flatMap((httpVersion) => [
    {
      name: `gRPC-Web over HTTP/${httpVersion}`,
      protocol: "grpc-web" as const,
      httpVersion,
      binary: true,
      transport: (baseUrl: string) => createGrpcWebTransport({ baseUrl, httpVersion }),
    },
    {
      name: `Connect binary over HTTP/${httpVersion}`,
      protocol: "connect" as const,
      httpVersion,
      binary: true,
      transport: (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion }),
    },
    {
      name: `Connect JSON over HTTP/${httpVersion}`,
      protocol: "connect" as const,
      httpVersion,
      binary: false,
      transport: (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion, useBinaryFormat: false }),
    },
  ]),
];

export function streamClient(c: ClientCase, baseUrl: string): Client<typeof StreamService> {
  return createClient(StreamService, c.transport(baseUrl));
}

/** Reads a stream to its end; the error it ended with, if any. */
export async function drain(iterable: AsyncIterable<unknown>): Promise<ConnectError | undefined> {
  try {
    for await (const _ of iterable) {
    }
  } catch (e) {
    return ConnectError.from(e);
  }
  return undefined;
}
