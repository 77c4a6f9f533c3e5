import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

// The package's only Node-only module, behind its own "./node" export with
// the "node" condition alone, so that a browser bundle that reaches for it
// fails to resolve instead of pulling node:http2 in.

export type NodeProtocol = "connect" | "grpc" | "grpcweb";

export interface NodeTransportOptions {
  /** The server, such as http://localhost:8080. */
  baseUrl: string;
  /** The protocol on the wire. Default "connect". */
  protocol?: NodeProtocol;
  /** Default "2" for gRPC (it needs HTTP/2), "1.1" for the others. */
  httpVersion?: "1.1" | "2";
}

/** A connect-node transport for one of the three protocols the server speaks. */
export function createNodeTransport(options: NodeTransportOptions): Transport {
  const protocol = options.protocol ?? "connect";
  const httpVersion = options.httpVersion ?? (protocol === "grpc" ? "2" : "1.1");
  switch (protocol) {
    case "grpc":
      if (httpVersion !== "2") throw new Error("gRPC needs HTTP/2: leave httpVersion unset or set it to 2");
      return createGrpcTransport({ baseUrl: options.baseUrl });
    case "grpcweb":
      return createGrpcWebTransport({ baseUrl: options.baseUrl, httpVersion });
    case "connect":
      return createConnectTransport({ baseUrl: options.baseUrl, httpVersion });
    default:
      throw new Error(`unknown protocol ${JSON.stringify(protocol)}: expected connect, grpc or grpcweb`);
  }
}
