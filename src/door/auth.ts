import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";

// Bearer tokens (RFC 6750), checked once, at the front door, for every route
// that needs one (Stream on every protocol, reflection, GET /stream with its
// ?access_token= for EventSource, /metrics with --auth-metrics on). A token
// never leaves this file: no error message, log line or metric label carries
// it. Messages avoid ":" and ";": connect percent-encodes them in
// grpc-message, and grpc-js (decodeURI) leaves them encoded.

/** RFC 6750's b64token: what may follow "Bearer ". */
const b64token = /^[A-Za-z0-9\-._~+/]+=*$/;
const bearerHeader = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The realm named in WWW-Authenticate. */
const realm = "stream-service";

export function isBearerToken(text: string): boolean {
  return b64token.test(text);
}

/** The tokens the server accepts, kept as SHA-256 digests; replace() swaps them at once (SIGHUP). */
export class BearerTokens {
  private digests: readonly Buffer[] = [];

  constructor(tokens: readonly string[]) {
    this.replace(tokens);
  }

  get size(): number {
    return this.digests.length;
  }

  replace(tokens: readonly string[]): void {
    this.digests = tokens.map(digest);
  }

  /**
   * Compares fixed-length digests with timingSafeEqual, and every one of them
   * whatever matched: the time taken tells nothing of how close a guess came,
   * nor which token it was.
   */
  accepts(token: string): boolean {
    const presented = digest(token);
    let ok = false;
    for (const known of this.digests) ok = timingSafeEqual(presented, known) || ok;
    return ok;
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** Why a call was refused: the error for RPCs, and the WWW-Authenticate challenge every answer carries. */
export interface AuthFailure {
  error: ConnectError;
  challenge: string;
}

export interface Credentials {
  /** The Authorization request header, as sent. */
  authorization: string | null | undefined;
  /** GET /stream's access_token query parameter (RFC 6750 section 2.3), if any. */
  accessToken?: string | null | undefined;
}

/** Undefined when the call may go on: no tokens configured, or one of them presented. */
export function authenticate(tokens: BearerTokens | undefined, credentials: Credentials): AuthFailure | undefined {
  if (tokens === undefined) return undefined;
  const { authorization, accessToken } = credentials;
  const hasHeader = authorization !== null && authorization !== undefined && authorization !== "";
  const hasQuery = accessToken !== null && accessToken !== undefined;
  if (hasHeader && hasQuery) {
    return failure(
      Code.InvalidArgument,
      "send the token either in the Authorization header or as access_token, not both",
      "invalid_request",
    );
  }
  if (!hasHeader && !hasQuery) {
    // RFC 6750 section 3.1: a request with no credentials gets the bare challenge, no error code.
    return failure(Code.Unauthenticated, "this call needs a bearer token (an Authorization header of Bearer <token>)");
  }
  const token = hasHeader ? bearerHeader.exec(authorization)?.[1] : accessToken;
  if (token === undefined || token === null) {
    return failure(Code.Unauthenticated, "the Authorization header must read Bearer <token>", "invalid_request");
  }
  if (!tokens.accepts(token)) return failure(Code.Unauthenticated, "the bearer token is not valid", "invalid_token");
  return undefined;
}

function failure(code: Code, message: string, error?: string): AuthFailure {
  const challenge = error === undefined ? `Bearer realm="${realm}"` : `Bearer realm="${realm}", error="${error}"`;
  return { error: new ConnectError(message, code), challenge };
}
