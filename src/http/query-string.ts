// GET /stream's query string, read the same way by the road that parses it
// and by the bearer check that looks for its token.

/** Read by the bearer check, not by the stream: RFC 6750 section 2.3, for EventSource, which cannot send headers. */
export const accessTokenParam = "access_token";

export function queryOf(target: string): URLSearchParams {
  const q = target.indexOf("?");
  return new URLSearchParams(q === -1 ? "" : target.slice(q + 1));
}

/** Whether every % of the query string starts a valid escape (URLSearchParams would keep "%ZZ" as it is). */
export function wellEscaped(target: string): boolean {
  const q = target.indexOf("?");
  return q === -1 || !/%(?![0-9A-Fa-f]{2})/.test(target.slice(q + 1));
}
