import * as http from "node:http";
import { type Nginx, startNginx } from "./nginx.js";
import { type ServerProc, startServerProcess, stop } from "./process.js";

// N server processes, each in a slot with a fixed port, optionally behind
// nginx with the shipped site. An instance can be stopped (SIGTERM, SIGKILL)
// and started again on its slot's port, so nginx's upstream list never
// changes, as with a supervisor restarting a service. Every instance's JSON
// log is kept, so a test can tell which instance served which stream.

export interface FleetOptions {
  /** Instances. Default 3. */
  size?: number;
  /** Flags for every instance. Default ["--shutdown-grace", "3s", "--trusted-proxy", "127.0.0.1"]: nginx is on loopback. */
  serverArgs?: string[];
  /** Put nginx (deploy/nginx/stream-service.conf as shipped) in front. Default true. */
  nginx?: boolean;
  /** Longest wait for an instance to log "listening" (tsx compiles at start: slow on a busy machine). Default 60000. */
  startTimeoutMs?: number;
  /** Longest wait for an instance to answer /readyz 200 after it logged "listening". Default 10000. */
  readyTimeoutMs?: number;
  /** Longest wait for a signalled instance to exit. Default 15000. */
  exitTimeoutMs?: number;
}

/** One process that ran in a slot. */
export interface Instance {
  readonly slot: number;
  /** 0 for the first process of the slot, then 1, 2, ... */
  readonly generation: number;
  readonly proc: ServerProc;
  /** Date.now() when it answered /readyz 200. */
  readonly readyAt: number;
}

/** Something the fleet went through, with its Date.now() time. */
export interface FleetEvent {
  at: number;
  slot: number;
  what: "started" | "SIGTERM" | "SIGKILL" | "exited";
  /** For "exited": the exit code or signal name. */
  exit?: number | string;
  /** For "exited": milliseconds from the signal to the exit. */
  afterMs?: number;
  /** For "exited" after SIGTERM: the instance's own "shut down" log line said nothing had to be cut. */
  clean?: boolean;
}

/** A "stream started" log line, with the instance that wrote it. */
export interface StreamStart {
  slot: number;
  generation: number;
  /** Date.parse() of the line's time. */
  at: number;
  name: string;
  id: string;
  protocol: string;
  http: string;
}

export interface RollingHooks {
  /** Called before each slot gets its SIGTERM. */
  before?(slot: number): void;
  /** Runs alongside each slot's start; the next slot waits for it too. */
  meanwhile?(slot: number): Promise<void>;
}

export interface Fleet {
  /** One port per slot, for the fleet's whole life. */
  readonly ports: readonly number[];
  readonly nginx: Nginx | undefined;
  /** Every process so far, in start order. */
  readonly instances: readonly Instance[];
  readonly events: readonly FleetEvent[];
  /** The slot's running process, if any. */
  current(slot: number): Instance | undefined;
  /** Slots whose process runs. */
  alive(): number[];
  /** Sends `signal` to the slot's process by its PID and resolves with its exit code once it exited. */
  signal(slot: number, signal: "SIGTERM" | "SIGKILL"): Promise<number | string>;
  /** Starts a process on the slot's port (its previous one must have exited) and resolves once /readyz answers 200. */
  start(slot: number): Promise<Instance>;
  /**
   * SIGTERM (if it runs), wait for the exit (it must be 0), start again, wait
   * for /readyz. `meanwhile` runs alongside the start (for example: wait until
   * the clients went on elsewhere); both must finish.
   */
  restart(slot: number, meanwhile?: () => Promise<void>): Promise<Instance>;
  /** restart() each slot in turn, the next only once the previous one is ready. */
  rollingRestart(hooks?: RollingHooks): Promise<void>;
  /** Every "stream started" line of every process so far, in time order. */
  streamStarts(): StreamStart[];
  /** The first start of the stream called `name`, once an instance logged it (logs are written in batches). */
  servedBy(name: string, timeoutMs?: number): Promise<StreamStart>;
  /** Ends nginx and every process still running, by PID. */
  stop(): Promise<void>;
}

export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const size = options.size ?? 3;
  const serverArgs = options.serverArgs ?? ["--shutdown-grace", "3s", "--trusted-proxy", "127.0.0.1"];
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const exitTimeoutMs = options.exitTimeoutMs ?? 15_000;
  const instances: Instance[] = [];
  const events: FleetEvent[] = [];
  const running = new Map<number, Instance>();

  const launch = async (slot: number, port: number): Promise<Instance> => {
    const proc = await startServerProcess(serverArgs, port, {}, startTimeoutMs);
    await waitReady(proc.port, readyTimeoutMs);
    const generation = instances.filter((i) => i.slot === slot).length;
    const instance: Instance = { slot, generation, proc, readyAt: Date.now() };
    instances.push(instance);
    running.set(slot, instance);
    events.push({ at: instance.readyAt, slot, what: "started" });
    return instance;
  };

  // Port 0 for the first generation: each slot keeps the port it was given.
  const launched = await Promise.allSettled(Array.from({ length: size }, (_, slot) => launch(slot, 0)));
  const first = launched.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  let nginx: Nginx | undefined;
  try {
    const failed = launched.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    if (options.nginx ?? true) nginx = await startNginx(first.map((i) => i.proc.port));
  } catch (e) {
    await Promise.all(first.map((i) => stop(i.proc, "SIGKILL")));
    throw e;
  }
  const ports = first.map((i) => i.proc.port);

  const fleet: Fleet = {
    ports,
    nginx,
    instances,
    events,
    current: (slot) => running.get(slot),
    alive: () => [...running.keys()].sort((a, b) => a - b),
    async signal(slot, signal) {
      const instance = running.get(slot);
      if (instance === undefined) throw new Error(`slot ${slot} runs no process`);
      const at = Date.now();
      events.push({ at, slot, what: signal });
      instance.proc.child.kill(signal);
      const exit = await withTimeout(instance.proc.exited, exitTimeoutMs, `slot ${slot} to exit after ${signal}`);
      running.delete(slot);
      const shutDown = instance.proc.lines.find((l) => l.includes('"shut down"'));
      events.push({
        at: Date.now(),
        slot,
        what: "exited",
        exit,
        afterMs: Date.now() - at,
        ...(shutDown !== undefined ? { clean: JSON.parse(shutDown).clean === true } : {}),
      });
      return exit;
    },
    start(slot) {
      if (running.has(slot)) throw new Error(`slot ${slot} runs already`);
      return launch(slot, ports[slot] as number);
    },
    async restart(slot, meanwhile) {
      if (running.has(slot)) {
        const exit = await fleet.signal(slot, "SIGTERM");
        if (exit !== 0) throw new Error(`slot ${slot} exited with ${exit} after SIGTERM`);
      }
      const [instance] = await Promise.all([fleet.start(slot), meanwhile?.()]);
      return instance;
    },
    async rollingRestart(hooks = {}) {
      const { before, meanwhile } = hooks;
      for (let slot = 0; slot < size; slot++) {
        before?.(slot);
        await fleet.restart(slot, meanwhile ? () => meanwhile(slot) : undefined);
      }
    },
    streamStarts() {
      const starts: StreamStart[] = [];
      for (const { slot, generation, proc } of instances) {
        for (const line of proc.lines) {
          if (!line.includes('"stream started"')) continue;
          const l = JSON.parse(line);
          starts.push({
            slot,
            generation,
            at: Date.parse(l.time),
            name: l.name,
            id: l.id,
            protocol: l.protocol,
            http: l.http,
          });
        }
      }
      return starts.sort((a, b) => a.at - b.at);
    },
    async servedBy(name, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = fleet.streamStarts().find((s) => s.name === name);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no instance logged the start of ${JSON.stringify(name)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async stop() {
      await nginx?.stop();
      await Promise.all(instances.map((i) => stop(i.proc, "SIGKILL")));
      running.clear();
    },
  };
  return fleet;
}

/** Polls GET /readyz on 127.0.0.1:port until it answers 200; rejects after timeoutMs. */
export async function waitReady(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    const status = await readyz(port).catch((e: Error) => e.message);
    if (status === 200) return;
    last = String(status);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`127.0.0.1:${port}/readyz not 200 within ${timeoutMs} ms (last: ${last})`);
}

/** One GET /readyz on a fresh connection: the status, or a rejection (refused, reset, 2 s timeout). */
export function readyz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/readyz", agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves true once `promise` settles, or false after `ms`; leaves no timer behind either way. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, ms));
    }),
  ]).finally(() => clearTimeout(timer));
}
