import { type DestinationStream, type LoggerOptions as PinoOptions, pino } from "pino";
import { redactPaths, scrubUrl, scrubUrlTokens } from "./redact.js";

// Structured logs on pino: one JSON object a line for machines and log
// shippers, a short line for a person at a terminal. The rest of the code
// sees only the small Logger below. Client text (names, addresses) only ever
// goes through JSON encoding, so a name can neither forge a log line nor a
// field, and credentials are redacted (redact.ts) before a line is written.

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type LogFormat = "json" | "pretty";
export type LogFields = Record<string, string | number | boolean | undefined>;

/** `at`: when it happened (Date.now()), for a line written a little later; default now. */
export interface Logger {
  debug(msg: string, fields?: LogFields, at?: number): void;
  info(msg: string, fields?: LogFields, at?: number): void;
  warn(msg: string, fields?: LogFields, at?: number): void;
  error(msg: string, fields?: LogFields, at?: number): void;
}

export interface LoggerOptions {
  /** Lowest level written. Default "info". */
  level?: LogLevel;
  /** "json", or "pretty" for a terminal. Default "json". */
  format?: LogFormat;
  /**
   * Where lines go, each a whole line with its newline. Default stdout,
   * through pino's asynchronous destination: lines logged while a write is
   * in flight leave together in the next one.
   */
  write?: (line: string) => void;
  /**
   * Fields every line carries. Default none: no pid and no hostname, which
   * the platform that collects the lines knows, unless several processes
   * share one output (--workers).
   */
  fields?: LogFields;
  /**
   * Several processes write to the same stdout (--workers): each write then
   * holds whole lines and at most PIPE_BUF (4096 bytes on Linux), which a pipe
   * writes at once, so no line of one process lands inside another's.
   * Default false: writes of up to 16 KiB, fewer system calls.
   */
  sharedOutput?: boolean;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? "json";
  // The time of the line being written, when the caller gave one (pino asks for it during the call).
  let at: number | undefined;
  const pinoOptions: PinoOptions = {
    level: options.level ?? "info",
    base: options.fields ?? null,
    timestamp: () => `,"time":"${isoTime(at ?? Date.now())}"`,
    formatters: {
      level: (label) => ({ level: label }),
      // pino's path redaction replaces whole values; a token inside a URL needs its own pass.
      log: scrubUrlTokens,
    },
    redact: { paths: redactPaths, censor: "[redacted]" },
  };
  const p = pino(pinoOptions, destination(format, options.write, options.sharedOutput === true));
  // A message is ours, never client text, but a URL may end up in one.
  const clean = (msg: string) => (msg.includes("access_token") ? scrubUrl(msg) : msg);
  const line = (write: typeof p.info, msg: string, fields: LogFields | undefined, time: number | undefined) => {
    at = time;
    try {
      if (fields === undefined) write.call(p, clean(msg));
      else write.call(p, fields, clean(msg));
    } finally {
      at = undefined;
    }
  };
  return {
    debug: (msg, fields, time) => line(p.debug, msg, fields, time),
    info: (msg, fields, time) => line(p.info, msg, fields, time),
    warn: (msg, fields, time) => line(p.warn, msg, fields, time),
    error: (msg, fields, time) => line(p.error, msg, fields, time),
  };
}

/** The last second isoTime() wrote, as "2026-12-03T11:28:05.": a second's lines share it. */
let cachedSecond = Number.NaN;
let cachedPrefix = "";

/** Date's toISOString(), which took a few microseconds a line, with only the milliseconds written per line. */
export function isoTime(millis: number): string {
  const second = Math.floor(millis / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  const ms = millis - second * 1000;
  return `${cachedPrefix}${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}Z`;
}

/** What one write(2) to a pipe may carry and still land whole (Linux's PIPE_BUF). */
const PIPE_BUF = 4096;

function destination(
  format: LogFormat,
  write: ((line: string) => void) | undefined,
  sharedOutput: boolean,
): DestinationStream {
  if (format === "pretty") {
    const out = write ?? ((line: string) => process.stdout.write(line));
    const colors = write === undefined && process.stdout.isTTY === true;
    return { write: (line) => out(prettyLine(line, colors)) };
  }
  if (write !== undefined) return { write };
  // Lines gather until a write is worth it, and leave within FLUSH_MS. A
  // write per line or two (what pino's asynchronous destination does when
  // calls come one at a time) is a write(2) on libuv's thread pool, with the
  // hand-overs between threads: measured, some 40 µs of CPU a call, ten
  // times what making its two lines costs. pino flushes what is pending
  // when the process exits.
  const out = pino.destination({
    dest: 1,
    sync: false,
    ...(sharedOutput ? { maxWrite: PIPE_BUF, minLength: PIPE_BUF / 2 } : { minLength: GATHER_BYTES }),
  });
  // sonic-boom's flush() does nothing while a write is on its way, and what
  // is left below minLength when that write ends waits for the next line:
  // so the timer comes again until every byte we handed over has gone.
  let pending = 0;
  let timer = false;
  const flush = () => {
    timer = false;
    if ((out as { destroyed?: boolean }).destroyed === true) return;
    out.flush();
    if (pending > 0) arm();
  };
  const arm = () => {
    timer = true;
    setTimeout(flush, FLUSH_MS).unref();
  };
  out.on("write", (n: number) => {
    pending -= n;
  });
  return {
    write(line: string) {
      out.write(line);
      pending += Buffer.byteLength(line);
      if (!timer) arm();
    },
  };
}

const FLUSH_MS = 50;
const GATHER_BYTES = 12 * 1024;

const levelColors: Record<string, string> = {
  debug: "\x1b[90m",
  info: "\x1b[32m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
};

/** "13:39:51.995 INFO  stream started id="r1" sent=3", from the JSON line pino wrote. */
function prettyLine(json: string, colors: boolean): string {
  const { time, level, msg, ...fields } = JSON.parse(json) as Record<string, unknown>;
  const label = String(level).toUpperCase().padEnd(5);
  let line = `${String(time).slice(11, 23)} ${colors ? `${levelColors[String(level)] ?? ""}${label}\x1b[0m` : label} ${String(msg)}`;
  for (const [key, value] of Object.entries(fields)) {
    line += ` ${key}=${typeof value === "string" || typeof value === "object" ? JSON.stringify(value) : String(value)}`;
  }
  return `${line}\n`;
}
