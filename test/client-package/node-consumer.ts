import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createStreamClient, resumeStream, type StreamClient } from "@stream-service/client";
import { createNodeTransport, type NodeProtocol } from "@stream-service/client/node";

// A consumer of the installed tarball, in a project of its own outside the
// repository (test/client-package.test.ts): compiled by tsc, run by plain
// node: node-consumer.js URL LIMIT TAG. One resuming stream per protocol at
// once, named "TAG <protocol>"; prints "<protocol> <counter>" per message and
// "<protocol> <state>" per status.

const [baseUrl = "", limit = "0", tag = "consumer"] = process.argv.slice(2);
const protocols: NodeProtocol[] = ["connect", "grpc", "grpcweb"];

await Promise.all(
  protocols.map(async (protocol) => {
    const client = createStreamClient(createNodeTransport({ baseUrl, protocol }));
    const request = { name: `${tag} ${protocol}`, interval: durationFromMs(100), limit: BigInt(limit) };
    const onStatus = (s: { state: string }) => console.log(`${protocol} ${s.state}`);
    for await (const m of resumeStream(client, request, { onStatus, initialBackoffMs: 50 })) {
      console.log(`${protocol} ${m.counter}`);
    }
  }),
);

/** Never called: tsc proves that the types are real, for an `any` would leave the directive unused (an error). */
export function typed(client: StreamClient) {
  // @ts-expect-error a name is a string
  return resumeStream(client, { name: 42 });
}
