import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { StreamService } from "./gen/stream/v1/stream_pb.js";

/** The generated StreamService client: `client.stream(request, options)` is one call, with no resume. */
export type StreamClient = Client<typeof StreamService>;

/**
 * A typed client of stream.v1.StreamService over any Connect transport: from
 * `@connectrpc/connect-web` in a browser, from `@connectrpc/connect-node` (or
 * this package's `./node` helper) in Node.
 */
export function createStreamClient(transport: Transport): StreamClient {
  return createClient(StreamService, transport);
}
