import type * as http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import type { NodeRequest, NodeResponse } from "../http/exchange.js";

export type RequestHandler = (req: NodeRequest, res: NodeResponse) => void;

// --max-connection-age. HTTP/2 sessions get theirs from the session guard
// (session-guard.ts): GOAWAY, a grace period, then their streams end. An
// HTTP/1.1 connection carries one request at a time, so a stream there is a
// connection of its own and balances like one; what can grow old is a
// keep-alive connection that goes from one short request to the next. Once
// it is past the age, its next response says `Connection: close` and the
// connection ends with that response. An open response is never cut.

/** The age ±10%, as grpc-go jitters MaxConnectionAge: connections opened together do not all go together. */
export function jitteredAge(maxAgeMs: number, random: () => number = Math.random): number {
  return maxAgeMs * (0.9 + 0.2 * random());
}

/**
 * `handler`, but a response on an HTTP/1.1 connection older than its
 * (jittered) age closes the connection. A connection's age counts from its
 * first request, which comes within --headers-timeout of the accept.
 */
export function closeAgedHttp1(handler: RequestHandler, maxAgeMs: number, random?: () => number): RequestHandler {
  if (maxAgeMs <= 0) return handler;
  const closeAt = new WeakMap<object, number>();
  return (req, res) => {
    if (req.httpVersionMajor === 1) {
      const now = performance.now();
      let due = closeAt.get(req.socket);
      if (due === undefined) {
        due = now + jitteredAge(maxAgeMs, random);
        closeAt.set(req.socket, due);
      }
      // Node then writes `Connection: close` and ends the socket after this response.
      if (now >= due) (res as http.ServerResponse).shouldKeepAlive = false;
    }
    handler(req, res);
  };
}

/** What a stream still open when its connection's grace is over ends with: resuming clients go on elsewhere. */
export const connectionAgeError = new ConnectError("connection reached its maximum age", Code.Unavailable);
