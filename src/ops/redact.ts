// Credentials never reach a log line: an Authorization header, a bearer
// token, and the ?access_token= that EventSource clients send in the URL
// because they cannot send headers (RFC 6750 §2.3). Named paths cost
// nothing measurable in pino; wildcard paths cost about 3 µs a line, so the
// paths are spelled out, for the top level and for a `headers` object.

/** pino's `redact.paths`: the secret keys at the top level, in `headers` and in `req.headers`. */
export const redactPaths: string[] = [
  ...["authorization", '["proxy-authorization"]', "cookie", "token", "access_token"],
  ...["headers.authorization", 'headers["proxy-authorization"]', "headers.cookie", "headers.token"],
  ...["req.headers.authorization", 'req.headers["proxy-authorization"]', "req.headers.cookie"],
];

const tokenInQuery = /([?&;]access_token=)[^&#\s"']*/g;

/** A string with the value of every access_token query parameter replaced. */
export function scrubUrl(text: string): string {
  return text.replace(tokenInQuery, "$1[redacted]");
}

/**
 * pino's `formatters.log`: the fields of a line, with access_token values cut
 * out of any string (a logged URL or path), two levels deep. Returns the same
 * object when there is nothing to cut, which is every line but a rare one.
 */
export function scrubUrlTokens(fields: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in fields) {
    const value = fields[key];
    let clean = value;
    if (typeof value === "string") {
      if (value.includes("access_token")) clean = scrubUrl(value);
    } else if (depth < 2 && typeof value === "object" && value !== null && !Array.isArray(value)) {
      clean = scrubUrlTokens(value as Record<string, unknown>, depth + 1);
    }
    if (clean !== value) {
      out ??= { ...fields };
      out[key] = clean;
    }
  }
  return out ?? fields;
}
