import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

// The server and the client as real processes: for what only a process can
// show (signals, exit codes, a restart on the same port).

const root = new URL("../..", import.meta.url).pathname;

export interface Proc {
  readonly child: ChildProcess;
  /** stdout lines so far. */
  readonly lines: string[];
  readonly stderr: () => string;
  /** Resolves with the first stdout line that matches. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Resolves once `check` holds, checked at every new stdout line and stderr chunk. */
  waitUntil(check: () => boolean, timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
}

/** A TypeScript file of this repository, run through tsx as `npm start` does. */
export function startProcess(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return startCommand(process.execPath, ["--import", "tsx", script, ...args], { env });
}

export interface CommandOptions {
  /** Working directory. Default the repository's root. */
  cwd?: string;
  /** Added to this process's environment; an undefined value removes the variable. */
  env?: NodeJS.ProcessEnv;
}

/** Any program, as it is: the child is exactly the process that `command` names. */
export function startCommand(command: string, args: string[], options: CommandOptions = {}): Proc {
  const child = spawn(command, args, {
    cwd: options.cwd ?? root,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
    for (const w of waiters) w();
  });
  const reader = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  reader.on("line", (line) => {
    lines.push(line);
    for (const w of waiters) w();
  });
  // 'exit' can come while the pipe still holds the child's last lines: a
  // test that reads them once it exited waits until they are all in (or 5 s,
  // should a grandchild keep the pipe open).
  const allRead = once(reader, "close");
  const exited = once(child, "exit").then(async ([code, signal]) => {
    await Promise.race([allRead, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    return (code ?? signal) as number | string;
  });
  return {
    child,
    lines,
    stderr: () => stderr,
    exited,
    waitUntil(check, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const onLine = () => {
          if (!check()) return;
          cleanup();
          resolve();
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms; stdout:\n${lines.join("\n")}\nstderr:\n${stderr}`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`process exited first; stdout:\n${lines.join("\n")}\nstderr:\n${stderr}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(onLine);
          child.off("exit", onExit);
        };
        waiters.add(onLine);
        child.once("exit", onExit);
        onLine();
      });
    },
    async waitForLine(match, timeoutMs) {
      await this.waitUntil(() => lines.some(match), timeoutMs);
      return lines.find(match) as string;
    },
  };
}

export interface ServerProc extends Proc {
  readonly port: number;
  readonly url: string;
}

/** The server's entry point, as `npm start` runs it. */
export const serverEntry = "src/main.ts";

/**
 * `npm start`'s entry on 127.0.0.1; port 0 picks a free one. Resolves once it
 * listens; rejects (and kills it) if it does not within `timeoutMs` (default
 * 15000). `env` is added to this process's environment (OTEL_* variables, as
 * an operator would set them); an undefined value removes a variable.
 */
export async function startServerProcess(
  args: string[] = [],
  port = 0,
  env: NodeJS.ProcessEnv = {},
  timeoutMs?: number,
): Promise<ServerProc> {
  const proc = startProcess(serverEntry, ["--host", "127.0.0.1", "--port", String(port), ...args], {
    LOG_FORMAT: "json",
    ...env,
  });
  try {
    return await listening(proc, timeoutMs);
  } catch (e) {
    await stop(proc, "SIGKILL");
    throw e;
  }
}

/** Resolves once a server started with LOG_FORMAT=json logged where it listens. */
export async function listening(proc: Proc, timeoutMs?: number): Promise<ServerProc> {
  const line = await proc.waitForLine((l) => l.includes('"listening on '), timeoutMs);
  const bound = Number(JSON.parse(line).port);
  return { ...proc, port: bound, url: `http://127.0.0.1:${bound}` };
}

/** Ends a process this test started, if it still runs. */
export function stop(proc: Proc, signal: NodeJS.Signals = "SIGTERM"): Promise<number | string> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
  return proc.exited;
}
