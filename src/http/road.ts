import type { ConnectError } from "@connectrpc/connect";
import type { Asked } from "../core/stream-service.js";
import type { Exchange, RequestHead } from "./exchange.js";

// What the front door knows of a road: which requests it serves, and, for
// each, how the door's policies treat it and how the road answers. Roads are
// registered beside each other in src/door/front-door.ts; the first whose
// route() takes a request serves it.

/** How an RPC protocol carries its timeout: the deadline policy reads it. */
export interface TimeoutReader {
  readonly header: string;
  parse(
    value: string | null,
    maxTimeoutMs: number,
  ): { timeoutMs?: number | undefined; error?: ConnectError | undefined };
}

/** One request's way through a road, decided once by route(). */
export interface Route {
  /** Who may call: anyone, or a bearer token when the server has tokens; "bearer-or-query" also takes ?access_token= (EventSource). */
  readonly auth: "open" | "bearer" | "bearer-or-query";
  /** For an RPC: where its protocol carries the timeout. */
  readonly timeout?: TimeoutReader | undefined;
  /** A call of Stream: a refusal is logged and counted as a stream rejected. */
  readonly stream: boolean;
  /** The road writes HTTP/2 frames itself, so it gets the raw stream rather than Node's compatibility objects. */
  readonly raw: boolean;
  serve(x: Exchange): void;
  /** Answers a policy's refusal (no token, a bad timeout) the road's own way. */
  refuse(x: Exchange, error: ConnectError): void;
  /** For a refused stream's log line: what the client asked for, as far as the head tells. Default nothing. */
  asked?(x: Exchange): Asked;
  /** The call's protocol as logs, metrics and spans name it ("grpc", "connect", "sse", ...). Default none. */
  protocol?(head: RequestHead): string;
}

export interface Road {
  /** As docs and logs name it. */
  readonly name: string;
  /** This road's route for a request, or undefined when it does not serve it. */
  route(head: RequestHead): Route | undefined;
}
