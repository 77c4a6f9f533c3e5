import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { Config } from "../config/config.js";
import { defaultMaxTimeoutMs } from "../connect-internals/protocol.js";
import type { GreetingStreams } from "../core/stream-service.js";
import { createConnectRoad } from "../entries/connect/connect-road.js";
import { createHttpStreamRoad } from "../entries/http-stream/http-stream.js";
import { createLeanRpcRoad } from "../entries/lean-rpc/lean-rpc.js";
import { createStaticPageRoad } from "../entries/static-page/static-page.js";
import { notFoundRoad, type PlainRoute, plainRoad } from "../http/plain-routes.js";
import type { Road } from "../http/road.js";
import type { Logger } from "../ops/log.js";
import type { BearerTokens } from "./auth.js";
import { authorityPolicy } from "./authority.js";
import type { ClientAddresses } from "./client-address.js";
import { corsPolicy } from "./cors.js";
import { createIntake, type Intake } from "./intake.js";
import {
  authPolicy,
  bodyTimeoutPolicy,
  deadlinePolicy,
  headerListPolicy,
  type Policy,
  requestIdPolicy,
  stopUploadPolicy,
} from "./policies.js";

// The front door: the one place where a request is decided. Every request,
// on either HTTP version, is classified once by the first road below whose
// route() takes it, then passes the policies below in order, then goes down
// its road. Adding a road or a policy is one line in one of these lists.

export interface FrontDoorOptions {
  config: Config;
  streams: GreetingStreams;
  logger: Logger;
  clients: ClientAddresses;
  /** With --auth-token-file. */
  tokens: BearerTokens | undefined;
  /** health, readiness and metrics, in the order given. */
  opsEndpoints: readonly PlainRoute[];
  /** Services beside Stream on connect-node's router (health, reflection). */
  rpcServices: ReadonlyArray<(router: ConnectRouter) => void>;
}

export function createFrontDoor(options: FrontDoorOptions): Intake {
  const { config, streams, logger, tokens } = options;

  const roads: Road[] = [
    // Stream over gRPC, gRPC-Web (binary and text) and Connect, on its own engine
    // (--fast-path off: gRPC-Web text alone, which connect-node does not speak).
    createLeanRpcRoad({
      streams,
      readMaxBytes: config.maxRequestBytes,
      logger,
      onlyWhatConnectLacks: !config.fastPath,
    }),
    // /healthz, /readyz, /metrics.
    plainRoad("ops endpoints", options.opsEndpoints),
    // GET /stream: NDJSON and Server-Sent Events.
    createHttpStreamRoad({ streams, heartbeatMs: config.heartbeatMs, tokens: tokens !== undefined }),
    // The web page.
    createStaticPageRoad(),
    // Every RPC the lean road did not take: health, reflection, and Stream itself.
    createConnectRoad({
      streams,
      routes: options.rpcServices,
      openServices: [Health.typeName],
      readMaxBytes: config.maxRequestBytes,
    }),
    // Anything else: 404.
    notFoundRoad,
  ];

  const policies: Policy[] = [
    // A Host or :authority a URL can be built from (400).
    authorityPolicy,
    // HTTP/2 header lists within --max-header-bytes (reset); HTTP/1.1's Node checks (431).
    headerListPolicy(config.maxHeaderBytes, logger),
    // Preflights answered; every answer gets what its origin may read.
    corsPolicy({ allowedOrigins: config.corsOrigins }),
    // x-request-id on every answer.
    requestIdPolicy,
    // An RPC's grpc-timeout or connect-timeout-ms becomes its deadline.
    deadlinePolicy(defaultMaxTimeoutMs),
    // A bearer token where the route needs one.
    authPolicy(tokens),
    // A body that does not arrive in time gets 408.
    bodyTimeoutPolicy(config.headersTimeoutMs),
    // After the answer, an unread HTTP/2 body is refused (RST_STREAM NO_ERROR).
    stopUploadPolicy,
  ];

  return createIntake({ roads, policies, streams, clients: options.clients, logger });
}
