// What a resuming client saw, recorded the same way for every kind of
// client (Node or browser), and the checks and figures made from it.

export type ClientKind =
  | "grpc"
  | "connect-h1"
  | "connect-h2"
  | "grpc-web"
  | "ndjson"
  | "sse"
  | "browser-page"
  | "browser-eventsource";

/** A stream that ended before its last message, and what came of it. */
export interface Break {
  /** Date.now() when the client saw the stream end. */
  at: number;
  /** Connect code name ("unavailable", "internal", ...) of the end, as the client read it. */
  code: string;
  message: string;
  /** Attempts that failed after this break before a message came again. */
  failedAttempts: string[];
  /** Milliseconds from `at` to the next message; undefined while none came. */
  resumeMs?: number;
}

export interface Trace {
  readonly kind: ClientKind;
  /** Unique in a run: the instances' logs name the stream by it. */
  readonly name: string;
  readonly startAt: number;
  /** Messages in all; the sequence is complete at startAt .. startAt + limit - 1. 0: no limit. */
  readonly limit: number;
  readonly intervalMs: number;
  /** Every counter in the order it arrived, duplicates included. */
  counters: number[];
  /** Date.now() of each counter's arrival. */
  arrivals: number[];
  breaks: Break[];
  outcome: "running" | "done" | "stopped" | "failed";
  /** Why it failed, for "failed". */
  error?: string;
}

export function newTrace(kind: ClientKind, name: string, startAt: number, limit: number, intervalMs: number): Trace {
  return { kind, name, startAt, limit, intervalMs, counters: [], arrivals: [], breaks: [], outcome: "running" };
}

/** Records a message: closes the open break, if any, with its time to resume. */
export function recordMessage(trace: Trace, counter: number, at = Date.now()): void {
  const open = trace.breaks.at(-1);
  if (open !== undefined && open.resumeMs === undefined) open.resumeMs = at - open.at;
  trace.counters.push(counter);
  trace.arrivals.push(at);
}

/**
 * Records an end before the last message. A failure while a break is still
 * open (a reconnect that failed too) joins that break, so time to resume
 * runs from the moment the stream first broke.
 */
export function recordBreak(trace: Trace, code: string, message: string, at = Date.now()): void {
  const open = trace.breaks.at(-1);
  if (open !== undefined && open.resumeMs === undefined) {
    open.failedAttempts.push(`${code}: ${message}`);
    return;
  }
  trace.breaks.push({ at, code, message, failedAttempts: [] });
}

/**
 * What is wrong with a trace's sequence: empty when it is exactly startAt,
 * startAt + 1, ... (startAt + limit - 1 when there is a limit), each once.
 * With `atLeast`, a sequence without limit must have that many messages.
 */
export function sequenceProblems(trace: Trace, atLeast = 1): string[] {
  const problems: string[] = [];
  const { counters, startAt, limit } = trace;
  const seen = new Set<number>();
  for (const [i, c] of counters.entries()) {
    if (seen.has(c)) problems.push(`duplicate ${c} at position ${i}`);
    else if (c !== startAt + seen.size)
      problems.push(`${c} at position ${i} where ${startAt + seen.size} was due (gap)`);
    seen.add(c);
    if (problems.length >= 5) break;
  }
  if (limit > 0 && counters.length !== limit) problems.push(`${counters.length} messages, expected ${limit}`);
  if (limit === 0 && counters.length < atLeast)
    problems.push(`${counters.length} messages, expected at least ${atLeast}`);
  // With a limit the client must have reached it; without one, it must not have given up.
  if (limit > 0 ? trace.outcome !== "done" : trace.outcome === "failed") {
    problems.push(`outcome ${trace.outcome}${trace.error ? `: ${trace.error}` : ""}`);
  }
  return problems;
}

/** The p-th percentile (0..100) by nearest rank; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** Times to resume of every break that resumed. */
export function resumeTimes(traces: readonly Trace[]): number[] {
  return traces.flatMap((t) => t.breaks.flatMap((b) => (b.resumeMs === undefined ? [] : [b.resumeMs])));
}

export interface KindSummary {
  kind: ClientKind;
  clients: number;
  messages: number;
  breaks: number;
  /** Breaks that needed more than one attempt to resume. */
  retried: number;
  p50: number;
  p99: number;
  max: number;
}

/** Per kind and in all ("all"): clients, messages, breaks and time to resume. */
export function summarize(traces: readonly Trace[]): Array<Omit<KindSummary, "kind"> & { kind: ClientKind | "all" }> {
  const kinds = [...new Set(traces.map((t) => t.kind))];
  const row = (kind: ClientKind | "all", ts: readonly Trace[]) => {
    const times = resumeTimes(ts);
    return {
      kind,
      clients: ts.length,
      messages: ts.reduce((n, t) => n + t.counters.length, 0),
      breaks: ts.reduce((n, t) => n + t.breaks.length, 0),
      retried: ts.reduce((n, t) => n + t.breaks.filter((b) => b.failedAttempts.length > 0).length, 0),
      p50: percentile(times, 50),
      p99: percentile(times, 99),
      max: times.length === 0 ? Number.NaN : Math.max(...times),
    };
  };
  return [
    ...kinds.map((k) =>
      row(
        k,
        traces.filter((t) => t.kind === k),
      ),
    ),
    row("all", traces),
  ];
}

/** A stretch of a run, for resume times per event: breaks seen from `at` until `end`. */
export interface Phase {
  what: string;
  at: number;
  end: number;
}

/**
 * A Markdown table of summarize(), for the test's output and the docs; with
 * `phases`, a column per phase with the time to resume of its breaks, p50 / p99.
 */
export function summaryTable(traces: readonly Trace[], phases: readonly Phase[] = []): string {
  const ms = (v: number) => (Number.isNaN(v) ? "-" : `${Math.round(v)} ms`);
  const lines = [
    `| client | clients | messages | breaks | retried | resume p50 | resume p99 | resume max |${phases.map((p) => ` ${p.what}: p50 / p99 |`).join("")}`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${phases.map(() => " ---: |").join("")}`,
  ];
  for (const r of summarize(traces)) {
    const ts = r.kind === "all" ? traces : traces.filter((t) => t.kind === r.kind);
    const perPhase = phases.map((p) => {
      const times = ts.flatMap((t) =>
        t.breaks
          .filter((b) => b.at >= p.at && b.at < p.end && b.resumeMs !== undefined)
          .map((b) => b.resumeMs as number),
      );
      return ` ${times.length === 0 ? "-" : `${ms(percentile(times, 50))} / ${ms(percentile(times, 99))}`} |`;
    });
    lines.push(
      `| ${r.kind} | ${r.clients} | ${r.messages} | ${r.breaks} | ${r.retried} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.max)} |${perPhase.join("")}`,
    );
  }
  return lines.join("\n");
}
