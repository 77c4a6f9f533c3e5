import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { shutdownError } from "../core/errors.js";
import type { NodeRequest, NodeResponse } from "../http/exchange.js";

// grpc.health.v1.Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md)
// and the plain /healthz and /readyz probes, all read from one status table.
// Everything is SERVING from the start; drain() (called when shutdown starts)
// turns everything NOT_SERVING at once, so load balancers stop sending work
// before the streams are cut.

export class HealthStatus {
  private readonly statuses = new Map<string, Status>();
  /** One wake-up per open Watch; a Set so a finished Watch leaves nothing behind. */
  private readonly watchers = new Set<() => void>();
  private drained = false;

  /** `services` are the names Check and Watch know besides "" (the whole server). */
  constructor(services: readonly string[]) {
    this.statuses.set("", Status.SERVING);
    for (const s of services) this.statuses.set(s, Status.SERVING);
  }

  /** The status of `service`, or undefined when it is not known here. */
  check(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  /** Every known service and its status. */
  list(): ReadonlyMap<string, Status> {
    return this.statuses;
  }

  /** True once draining started: readiness fails from then on. */
  get draining(): boolean {
    return this.drained;
  }

  /** Open Watch calls right now. */
  get watcherCount(): number {
    return this.watchers.size;
  }

  /** Everything NOT_SERVING, for good: open Watch calls send it and then end. */
  drain(): void {
    this.drained = true;
    for (const s of this.statuses.keys()) this.statuses.set(s, Status.NOT_SERVING);
    for (const wake of this.watchers) wake();
  }

  /**
   * The status of `service` now and after every change, until `signal` aborts
   * or the server drains (then it ends with UNAVAILABLE, after NOT_SERVING).
   * An unknown service reads SERVICE_UNKNOWN and the call stays open, as the
   * protocol asks.
   */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status, void> {
    let wake: (() => void) | undefined;
    const notify = () => wake?.();
    this.watchers.add(notify);
    signal.addEventListener("abort", notify);
    try {
      let last: Status | undefined;
      for (;;) {
        // signal.reason, not a fresh error: it carries the right code (a deadline is DEADLINE_EXCEEDED).
        if (signal.aborted) throw signal.reason;
        const now = this.statuses.get(service) ?? Status.SERVICE_UNKNOWN;
        if (now !== last) {
          last = now;
          yield now;
          continue;
        }
        if (this.drained) throw shutdownError;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.watchers.delete(notify);
      signal.removeEventListener("abort", notify);
    }
  }
}

/** The Health service on the connect router. */
export function createHealthRoutes(health: HealthStatus) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      check(req) {
        const status = health.check(req.service);
        if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
        return { status };
      },
      list() {
        const statuses: Record<string, { status: Status }> = {};
        for (const [service, status] of health.list()) statuses[service] = { status };
        return { statuses };
      },
      async *watch(req, ctx) {
        for await (const status of health.watch(req.service, ctx.signal)) yield { status };
      },
    });
}

/** GET /healthz: liveness. 200 whenever the process answers at all. */
export function handleHealthz(_req: NodeRequest, res: NodeResponse): void {
  sendText(res, 200, "ok\n");
}

/** GET /readyz: readiness. 503 from the moment shutdown starts, so no new work arrives. */
export function createReadyzHandler(health: HealthStatus) {
  return (_req: NodeRequest, res: NodeResponse): void => {
    if (health.draining) sendText(res, 503, "draining\n");
    else sendText(res, 200, "ready\n");
  };
}

function sendText(res: NodeResponse, status: number, body: string): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  res.end(body);
}
