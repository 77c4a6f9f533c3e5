// Structured logs: one JSON object a line for machines, a short line for a
// person at a terminal. Client text (names, addresses) only ever goes through
// JSON.stringify, so a name can neither forge a log line nor a field.

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type LogFormat = "json" | "pretty";
export type LogFields = Record<string, string | number | bigint | boolean | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  /** Lowest level written. Default "info". */
  level?: LogLevel;
  /** "json", or "pretty" for a terminal. Default "json". */
  format?: LogFormat;
  /** Where lines go. Default stdout, through bufferedStdout(). */
  write?: (line: string) => void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = rank[options.level ?? "info"];
  const format = options.format ?? "json";
  const write = options.write ?? bufferedStdout();
  const emit = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (rank[level] < min) return;
    write(format === "json" ? jsonLine(level, msg, fields) : prettyLine(level, msg, fields));
  };
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
  };
}

function jsonLine(level: string, msg: string, fields: LogFields | undefined): string {
  return `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, bigintAsString)}\n`;
}

function prettyLine(level: string, msg: string, fields: LogFields | undefined): string {
  let line = `${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}`;
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value === undefined) continue;
    line += ` ${key}=${typeof value === "string" ? JSON.stringify(value) : String(value)}`;
  }
  return `${line}\n`;
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/**
 * Writes lines in batches: what arrives within `flushMs` goes out in one
 * write. A write per line is a system call per line, two per stream, and on a
 * busy server that showed in every call's first-message latency (bench figure
 * 2). Lines are at most `flushMs` late; what is pending when the process exits
 * is written then (stdout writes to files and pipes are synchronous on Linux).
 */
export function bufferedStdout(
  sink: { write(chunk: string): unknown } = process.stdout,
  flushMs = 50,
  maxPendingBytes = 64 * 1024,
): (line: string) => void {
  let pending = "";
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending === "") return;
    const out = pending;
    pending = "";
    sink.write(out);
  };
  process.once("exit", flush);
  return (line) => {
    pending += line;
    if (pending.length >= maxPendingBytes) flush();
    else timer ??= setTimeout(flush, flushMs).unref();
  };
}
