import * as http2 from "node:http2";
import type { ConnectError } from "@connectrpc/connect";
import { Code, ConnectError as Err } from "@connectrpc/connect";
import { answerJson, answerStarted, type Exchange } from "../http/exchange.js";
import { resetStream, writesPending } from "../http/h2.js";
import { accessTokenParam, queryOf } from "../http/query-string.js";
import type { Route } from "../http/road.js";
import type { Logger } from "../ops/log.js";
import { authenticate, type BearerTokens } from "./auth.js";

// What the front door does to every request before its road sees it, one
// policy at a time, in the order src/door/front-door.ts lists them. A policy
// lets the request go on (undefined), answers it itself ("answered": a
// preflight, a bad Host), or refuses it with an error that the road answers
// in its own protocol (gRPC trailers, a Connect end-of-stream message, JSON).

export type Verdict = undefined | "answered" | ConnectError;
export type Policy = (x: Exchange, route: Route) => Verdict;

/** Echoes the caller's request id, or the one made at birth, on every answer. */
export const requestIdPolicy: Policy = (x) => {
  x.responseHeaders["x-request-id"] = x.call.requestId;
  return undefined;
};

/**
 * An HTTP/2 header list past --max-header-bytes, measured as RFC 9113
 * section 6.5.2 does, is reset (ENHANCE_YOUR_CALM, which grpc-js reads as
 * RESOURCE_EXHAUSTED) whether or not the peer has acknowledged our SETTINGS
 * yet: nghttp2 applies SETTINGS_MAX_HEADER_LIST_SIZE only from then on, so a
 * connection's first requests would get its default of 64 KiB.
 */
export function headerListPolicy(maxHeaderBytes: number, logger: Logger): Policy {
  return (x) => {
    const t = x.transport;
    if (t.kind !== "h2") return undefined;
    let size = 0;
    for (const field of t.rawHeaders) size += field.length;
    if (size + 16 * t.rawHeaders.length <= maxHeaderBytes) return undefined;
    logger.debug("http2 header list too large", { limit: maxHeaderBytes });
    resetStream(t.stream, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    return "answered";
  };
}

/** An RPC's timeout, read from its protocol's header: the call's deadline runs from the request's headers. */
export function deadlinePolicy(maxTimeoutMs: number): Policy {
  return (x, route) => {
    const reader = route.timeout;
    if (reader === undefined) return undefined;
    const { timeoutMs, error } = reader.parse(single(x.head.headers[reader.header]) ?? null, maxTimeoutMs);
    if (error !== undefined) return error;
    if (timeoutMs !== undefined) {
      x.timeoutMs = timeoutMs;
      x.call.deadlineAt = performance.now() + timeoutMs;
    }
    return undefined;
  };
}

/** With --auth-token-file, a route that is not open needs a bearer token; the challenge goes on the answer. */
export function authPolicy(tokens: BearerTokens | undefined): Policy {
  if (tokens === undefined) return () => undefined;
  return (x, route) => {
    if (route.auth === "open") return undefined;
    const failure = authenticate(tokens, {
      authorization: single(x.head.headers.authorization),
      accessToken: route.auth === "bearer-or-query" ? queryOf(x.head.target).get(accessTokenParam) : undefined,
    });
    if (failure === undefined) return undefined;
    x.responseHeaders["www-authenticate"] = failure.challenge;
    return failure.error;
  };
}

/**
 * A request body must arrive within `timeoutMs` of its head, as the head must
 * within --headers-timeout: past it, a request not yet answered gets 408,
 * whichever road waits for it. (Node's own request timeout would close an
 * HTTP/1.1 connection only later, and HTTP/2 has none.) Nearly every body
 * comes in the same read as its head, and its call is answered in that turn:
 * requests are looked at once the turn is over, and only one still waiting
 * for its body gets a timer. A timer and its three listeners for every
 * request were a fifth of what the front door cost a call.
 */
export function bodyTimeoutPolicy(timeoutMs: number): Policy {
  let waiting: Exchange[] = [];
  let since: number[] = [];
  const armWhoStillWaits = () => {
    const list = waiting;
    const times = since;
    waiting = [];
    since = [];
    const now = performance.now();
    for (let i = 0; i < list.length; i++) {
      const x = list[i] as Exchange;
      if (!answerStarted(x) && !bodyArrived(x)) armBodyTimer(x, timeoutMs - (now - (times[i] as number)));
    }
  };
  return (x) => {
    if (!x.head.hasBody || timeoutMs <= 0) return undefined;
    if (waiting.length === 0) setImmediate(armWhoStillWaits);
    waiting.push(x);
    since.push(performance.now());
    return undefined;
  };
}

function bodyArrived(x: Exchange): boolean {
  const t = x.transport;
  return t.kind === "h2" ? t.stream.readableEnded || t.stream.destroyed : t.req.complete || t.req.destroyed;
}

function armBodyTimer(x: Exchange, ms: number): void {
  const t = x.transport;
  const body = t.kind === "h2" ? t.stream : t.req;
  const timer = setTimeout(
    () => {
      if (answerStarted(x)) return;
      // HTTP/2 has no Connection header (Node throws on one: a timer's throw, the process's end); the stream ends.
      const close: Record<string, string> = x.head.version === "2.0" ? {} : { connection: "close" };
      answerJson(x, 408, "deadline_exceeded", "the request body did not arrive in time", close);
    },
    Math.max(0, ms),
  );
  const clear = () => clearTimeout(timer);
  body.once("end", clear);
  body.once("close", clear);
  (t.kind === "h2" ? t.stream : t.res).once("finish", clear);
}

/**
 * Once an HTTP/2 request is answered, a body its road did not read is
 * refused with RST_STREAM NO_ERROR (RFC 9113 section 8.1): a client still
 * uploading (a 64 MiB message refused at 4 KiB) stops, instead of sending on
 * for nobody. The reset must follow the answer's last frame, trailers
 * included, or the client loses them: it goes once nghttp2 has sent our
 * END_STREAM (the stream's localClose), which comes a few turns after
 * 'finish' at most, later only for a peer that reads nothing.
 */
export const stopUploadPolicy: Policy = (x) => {
  const t = x.transport;
  if (t.kind !== "h2" || !x.head.hasBody) return undefined;
  // A plain function, not a closure per stream: streams with a body are most of them, and live long.
  t.stream.once("finish", stopUploadOnceSent);
  return undefined;
};

function stopUploadOnceSent(this: http2.ServerHttp2Stream): void {
  stopUploadLater(this, 0);
}

function stopUploadLater(stream: http2.ServerHttp2Stream, waited: number): void {
  if (stream.destroyed || stream.closed || stream.readableEnded || stream.state.remoteClose) return;
  // Not yet sent, or sent into a socket the peer does not read (a reset there would wait behind it).
  if (!stream.state.localClose || writesPending(stream.session)) {
    // 1, 2, 4 ... ms, about 8 s in all: a peer that takes nothing gets its end from the session's guard.
    if (waited < 13) setTimeout(stopUploadLater, 2 ** waited, stream, waited + 1);
    return;
  }
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/** What a road's unexpected exception becomes, for the client: the cause stays in the log. */
export function roadFailure(): ConnectError {
  return new Err("internal error", Code.Internal);
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : value?.join(", ");
}
