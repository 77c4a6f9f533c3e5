import type { Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument as invalid } from "../../core/errors.js";
import { MAX_COUNTER, type StreamParams } from "../../core/greeting.js";
import type { Asked } from "../../core/stream-service.js";
import { accessTokenParam, queryOf, wellEscaped } from "../../http/query-string.js";
import { durationFromMs, parseDuration } from "../../shared/duration.js";

// GET /stream's query string (and EventSource's Last-Event-ID) read as the
// same StreamParams the RPC carries, durations with the same parser as every
// flag and client of the service (100ms, 1.5s, 2m). Error messages start with
// the parameter's name, worded like core/greeting.ts's.

const params = new Set(["name", "interval", "limit", "start_at"]);
const uint64 = /^\d{1,20}$/;

/**
 * Query string (and Last-Event-ID) to StreamParams; undefined when
 * Last-Event-ID says the stream is complete. access_token is allowed (once)
 * and left to the bearer check.
 */
export function parseQuery(url: string, lastEventId: string | undefined): StreamParams | undefined {
  if (!wellEscaped(url)) throw invalid("the query string has a % that starts no escape (write %25 for a %)");
  const query = queryOf(url);
  const seen = new Set<string>();
  for (const key of query.keys()) {
    if (!params.has(key) && key !== accessTokenParam) {
      throw invalid(`${key} is not a parameter (expected name, interval, limit or start_at)`);
    }
    if (seen.has(key)) throw invalid(`${key} is given more than once`);
    seen.add(key);
  }
  const limit = counter("limit", query.get("limit"));
  let startAt = counter("start_at", query.get("start_at"));
  const interval = duration(query.get("interval"));
  let remaining = limit;
  if (lastEventId !== undefined && lastEventId.trim() !== "") {
    const last = counter("Last-Event-ID", lastEventId.trim());
    // The same URL comes back on every reconnect: go on after `last`, with what is left of the limit.
    if (last + 1n < startAt) throw invalid(`Last-Event-ID ${last} is before start_at ${startAt}`);
    if (limit !== 0n) {
      const sent = last + 1n - startAt;
      if (sent >= limit) return undefined;
      remaining = limit - sent;
    }
    // The largest counter was the last there is: the stream is complete.
    if (last === MAX_COUNTER) return undefined;
    startAt = last + 1n;
  }
  return {
    name: query.get("name") ?? "",
    ...(interval !== undefined ? { interval } : {}),
    limit: remaining,
    startAt,
  };
}

/** What the query asked for, as sent, for the log line of a refusal. */
export function askedOf(url: string): Asked {
  const query = wellEscaped(url) ? queryOf(url) : new URLSearchParams();
  const text = (key: string) => query.get(key)?.slice(0, 128) ?? undefined;
  return { name: text("name"), interval: text("interval"), limit: text("limit"), startAt: text("start_at") };
}

function counter(name: string, raw: string | null): bigint {
  if (raw === null) return 0n;
  const n = uint64.test(raw) ? BigInt(raw) : -1n;
  if (n < 0n || n > MAX_COUNTER) throw invalid(`${name} must be a whole number from 0 to ${MAX_COUNTER}`);
  return n;
}

function duration(raw: string | null): Duration | undefined {
  if (raw === null) return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined) {
    throw invalid(`interval must be a duration such as 100ms, 1.5s or 2m (got ${JSON.stringify(raw.slice(0, 64))})`);
  }
  return durationFromMs(ms);
}
