import { type Config, defaults } from "../../src/config/config.js";
import { createLogger, type LogFields } from "../../src/ops/log.js";
import type { Listener } from "../../src/server/listen.js";
import { createServer, type Server } from "../../src/server/server.js";

// A real server on 127.0.0.1 and a free port, in this process, so tests can
// look inside (live streams, pending waits) while talking to it over sockets.

export interface LogLine extends LogFields {
  level: string;
  msg: string;
}

export interface TestServer {
  readonly server: Server;
  /** Its connections and sessions. */
  readonly listener: Listener;
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /**
   * Every log line written so far, parsed. Reading it first delivers what the
   * stream observers are still owed (they run a turn or so after the fact),
   * as a scrape of /metrics does.
   */
  readonly logs: LogLine[];
  close(): Promise<void>;
}

export async function startServer(overrides: Partial<Config> = {}): Promise<TestServer> {
  const logs: LogLine[] = [];
  const config: Config = {
    ...defaults,
    host: "127.0.0.1",
    port: 0,
    shutdownGraceMs: 2000,
    // CI runs the whole suite twice: as configured, and with FAST_PATH=off.
    fastPath: process.env.FAST_PATH === "off" ? false : defaults.fastPath,
    ...overrides,
  };
  const logger = createLogger({ format: "json", level: "debug", write: (line) => logs.push(JSON.parse(line)) });
  const server = createServer(config, logger);
  const listener = await server.listen();
  const port = listener.address().port;
  return {
    server,
    listener,
    port,
    url: `http://127.0.0.1:${port}`,
    get logs() {
      server.streams.flushObservers();
      return logs;
    },
    close: async () => {
      await server.shutdown();
    },
  };
}

/** Resolves once `predicate` holds, checking on every turn of the event loop; rejects after `timeoutMs`. */
export async function eventually(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Resolves with the value of `read()` once it has not changed for `quietMs`
 * (checked on every turn of the event loop); rejects after `timeoutMs`. For
 * "the server stopped producing": a count that settles, not a fixed sleep.
 */
export async function settled(read: () => number, quietMs: number, timeoutMs: number, what: string): Promise<number> {
  let seen = read();
  let since = performance.now();
  await eventually(
    () => {
      const now = read();
      if (now !== seen) {
        seen = now;
        since = performance.now();
      }
      return performance.now() - since >= quietMs;
    },
    timeoutMs,
    what,
  );
  return seen;
}
