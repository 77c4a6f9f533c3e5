import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

// A well-behaved client beside an attack, in a process of its own
// (good-client-run.ts): an NDJSON stream at `intervalMs` on its own
// connection and a /healthz probe every `probeEveryMs`. Its figures are taken
// at the client, over the whole attack.

const root = new URL("../..", import.meta.url).pathname;

export interface GoodClientOptions {
  /** The stream's interval. Default 100. */
  intervalMs?: number;
  /** Pause between two /healthz probes. Default 50. */
  probeEveryMs?: number;
  /** Each probe on a fresh connection (so new connections must be accepted), or all on one kept connection. Default true. */
  freshProbes?: boolean;
}

export interface GoodClientReport {
  /** Messages the stream received. */
  messages: number;
  /** Largest time between two messages, or from the last message to the stop, in ms. */
  worstGapMs: number;
  /** Largest /healthz round trip, failures included, in ms. */
  worstHealthzMs: number;
  /** /healthz probes that answered 200. */
  probes: number;
  /** Probes that failed (an error, a timeout of 5 s, a status other than 200). */
  probeFailures: number;
  firstProbeFailure?: string;
  /** Why the stream failed, if it did before the stop. */
  streamError?: string;
}

export interface GoodClient {
  /** Ends the client and resolves with its figures. */
  stop(): Promise<GoodClientReport>;
}

/** Starts the client; resolves once its stream delivered a first message. */
export async function startGoodClient(url: string, options: GoodClientOptions = {}): Promise<GoodClient> {
  const args = { url, intervalMs: 100, probeEveryMs: 50, freshProbes: true, ...options };
  const child = spawn(process.execPath, ["--import", "tsx", "test/support/good-client-run.ts", JSON.stringify(args)], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = once(child, "exit");
  const first = await Promise.race([
    lines.next(),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error("the good client got no first message within 15 s")), 15_000).unref(),
    ),
  ]);
  if (first.value !== "ready") {
    child.kill("SIGKILL");
    throw new Error(`the good client did not start: ${String(first.value)}`);
  }
  return {
    async stop() {
      child.stdin.end();
      const line = await lines.next();
      await exited;
      return JSON.parse(String(line.value)) as GoodClientReport;
    },
  };
}
