import assert from "node:assert/strict";
import { setMaxListeners } from "node:events";
import { after, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { readyz, settlesWithin, waitReady } from "../support/fleet.js";
import { type ServerProc, startServerProcess, stop } from "../support/process.js";
import {
  type ClientPlan,
  nodeClientKinds,
  type RunningClient,
  type SharedTransports,
  startClient,
} from "../support/resuming-clients.js";
import { percentile, sequenceProblems, summaryTable } from "../support/traces.js";

// Issue 12's "restarts lose nothing on any protocol": 2,000 streams on one
// server process, over gRPC, Connect (HTTP/1.1 and HTTP/2), gRPC-Web, NDJSON
// and SSE; then SIGTERM. Readiness must turn off and stay off, every stream
// must end with its protocol's UNAVAILABLE, the process must exit 0 within
// the grace period, and every client must go on at the next server on the
// same port with no gap and no duplicate. Readiness dropping *before* the
// streams end is measured and reported, not asserted: today nothing outside
// can see it (docs/deploy.md, "2,000 streams through a SIGTERM").

const STREAMS = 2000;
/** The default --shutdown-grace, as in production. */
const GRACE_MS = 10_000;
// Served on, not ready, for this long after SIGTERM: what a load balancer that polls /readyz needs to see.
const DELAY_MS = 1000;
const INTERVAL_MS = 1000;
/** Messages a stream: 30 s unbroken, so that all 2,000 are still open when the signal comes. */
const LIMIT = 30;
/** HTTP/2 streams of a kind that share one connection, as the streams of a gRPC channel do. */
const STREAMS_PER_H2_CONNECTION = 25;

describe(`SIGTERM with ${STREAMS} streams open on one server, over every protocol`, () => {
  const servers: ServerProc[] = [];
  const stopClients = new AbortController();
  // Every client listens on it (Node warns past 10 listeners).
  setMaxListeners(STREAMS * 4, stopClients.signal);

  after(async () => {
    stopClients.abort();
    await Promise.all(servers.map((s) => stop(s, "SIGKILL")));
  });

  it("should turn readiness off for good, end every stream with UNAVAILABLE, exit 0 in the grace period, and resume every client on the next server", {
    timeout: 120_000,
  }, async (t) => {
    const first = await startServerProcess(
      ["--shutdown-grace", `${GRACE_MS / 1000}s`, "--shutdown-delay", `${DELAY_MS / 1000}s`],
      0,
      {},
      60_000,
    );
    servers.push(first);
    const endpoints = { h1: first.url, h2: first.url };
    const shared: SharedTransports = new Map();
    const plans: ClientPlan[] = Array.from({ length: STREAMS }, (_, n) => {
      const kind = nodeClientKinds[n % nodeClientKinds.length] as ClientPlan["kind"];
      const connection = `c${Math.floor(n / (nodeClientKinds.length * STREAMS_PER_H2_CONNECTION))}`;
      return { kind, name: `drain ${kind} ${n}`, startAt: n, limit: LIMIT, intervalMs: INTERVAL_MS, connection };
    });
    // Readiness as a load balancer sees it: a gRPC health Watch, and /readyz asked again and again.
    const health = createClient(Health, createGrpcTransport({ baseUrl: first.url }));
    const watched: Array<{ status: Serving; at: number }> = [];
    const watching = (async () => {
      try {
        for await (const r of health.watch({ service: "" }, { signal: stopClients.signal })) {
          watched.push({ status: r.status, at: Date.now() });
        }
      } catch (e) {
        return ConnectError.from(e);
      }
      return undefined;
    })();
    await until(() => watched.length > 0, 10_000, "the health Watch's first status");
    const probes: Probe[] = [];
    let probing = true;
    const probeLoop = (async () => {
      // Ends at the signal's exit, or when the test ends (after() aborts stopClients).
      while (probing && !stopClients.signal.aborted) {
        const sentAt = Date.now();
        const answer = await readyz(first.port).catch((e: NodeJS.ErrnoException) => e.code ?? e.message);
        probes.push({ sentAt, at: Date.now(), answer });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await until(() => probes.length > 0, 15_000, "a /readyz answer");
    const started = Date.now();
    const clients: RunningClient[] = plans.map((p) => startClient(p, endpoints, stopClients.signal, shared));
    const traces = clients.map((c) => c.trace);
    // Bounded well inside a stream's life: all of them must still be open when the signal comes.
    await until(
      () => traces.every((tr) => tr.counters.length > 0),
      (LIMIT * INTERVAL_MS) / 2,
      "every stream's first message (a machine this busy cannot run the test)",
    );
    const allOpenMs = Date.now() - started;

    const signalledAt = Date.now();
    first.child.kill("SIGTERM");
    const exit = await first.exited;
    const exitMs = Date.now() - signalledAt;
    probing = false;
    await probeLoop;
    const watchEnd = await watching;

    // Every stream ended with its protocol's UNAVAILABLE: the first break of each client says so.
    await until(
      () => traces.every((tr) => tr.breaks.length > 0),
      10_000,
      "every client to see its stream end",
      () => {
        const open = traces.filter((tr) => tr.breaks.length === 0);
        const kinds = [...new Set(open.map((tr) => tr.kind))].map(
          (k) => `${k} x${open.filter((tr) => tr.kind === k).length}`,
        );
        return `still open: ${kinds.join(", ")}; e.g. ${open
          .slice(0, 3)
          .map(
            (tr) =>
              `${tr.name} (${tr.counters.length} messages, outcome ${tr.outcome}, last at ${(tr.arrivals.at(-1) ?? 0) - signalledAt} ms)`,
          )
          .join(", ")}; exit ${exit} after ${exitMs} ms`;
      },
    );
    const firstBreaks = traces.map((tr) => ({ tr, b: tr.breaks[0] }));

    const next = await startServerProcess(["--shutdown-grace", `${GRACE_MS / 1000}s`], first.port, {}, 60_000);
    servers.push(next);
    await waitReady(next.port, 10_000);
    const nextUpAt = Date.now();
    await settlesWithin(Promise.all(clients.map((c) => c.done)), LIMIT * INTERVAL_MS + 30_000);
    const doneMs = Date.now() - nextUpAt;

    const shutDown = first.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "shut down");
    const shuttingDown = first.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "shutting down");
    const notServing = watched.find((w) => w.status === Serving.NOT_SERVING);
    const firstCut = Math.min(...firstBreaks.map(({ b }) => b?.at ?? Number.POSITIVE_INFINITY));
    const lastCut = Math.max(...firstBreaks.map(({ b }) => b?.at ?? 0));
    const answeredAfterSignal = probes.filter((p) => p.at >= signalledAt);
    // Sent once the server began to shut down, by its own log's clock (the same machine's).
    const sentWhileDraining = probes.filter((p) => p.sentAt > Date.parse(shuttingDown?.time ?? ""));
    const resumes = traces.flatMap((tr) => tr.breaks.map((b) => b.resumeMs ?? Number.NaN));
    t.diagnostic(
      [
        `${STREAMS} streams open ${allOpenMs} ms after the clients started; server log at SIGTERM: ${JSON.stringify(shuttingDown)}`,
        `exit ${exit} ${exitMs} ms after SIGTERM; ${JSON.stringify(shutDown)}`,
        `health Watch: ${watched.map((w) => `${Serving[w.status]} at ${w.at - signalledAt} ms`).join(", ")}; ended with ${watchEnd?.code !== undefined ? Code[watchEnd.code] : "OK"} ${watchEnd?.rawMessage ?? ""}`,
        `streams cut from ${firstCut - signalledAt} ms to ${lastCut - signalledAt} ms after SIGTERM`,
        `/readyz after SIGTERM: ${summarizeProbes(answeredAfterSignal, signalledAt)}`,
        `next server ready ${nextUpAt - signalledAt} ms after SIGTERM; every client done ${doneMs} ms later`,
        `time to resume (break to next message, including the time with no server): p50 ${percentile(resumes, 50)} ms, p99 ${percentile(resumes, 99)} ms`,
        summaryTable(traces),
      ].join("\n"),
    );

    assert.equal(exit, 0, "exit status 0");
    assert.ok(
      exitMs < DELAY_MS + GRACE_MS + 1000,
      `exited ${exitMs} ms after SIGTERM, delay ${DELAY_MS} ms, grace ${GRACE_MS} ms`,
    );
    assert.equal(shutDown?.clean, true, "nothing had to be cut when the grace period ended");

    const wrongEnd = firstBreaks
      .filter(({ b }) => b?.code !== "unavailable" || b.message !== "server is shutting down")
      .map(({ tr, b }) => `${tr.name}: ${b?.code}: ${b?.message}`);
    assert.deepEqual(wrongEnd.slice(0, 10), [], `${wrongEnd.length} streams did not end with UNAVAILABLE`);

    // Readiness dropped first and never came back: during --shutdown-delay /readyz answered 503 and the
    // Watch said NOT_SERVING while every stream still ran, and no /readyz sent after the server began
    // to shut down was answered 200.
    assert.ok(notServing !== undefined, "the health Watch turned NOT_SERVING");
    assert.ok(notServing.at < firstCut, "the Watch said NOT_SERVING before the first stream was cut");
    assert.ok(
      probes.some((p) => p.answer === 503 && p.at < firstCut),
      "/readyz answered 503 before the first stream was cut",
    );
    assert.equal(watchEnd?.code, Code.Unavailable, "the Watch ended with UNAVAILABLE after NOT_SERVING");
    assert.ok(sentWhileDraining.length > 0, "a /readyz probe was sent while the server shut down");
    assert.deepEqual(
      sentWhileDraining.filter((p) => p.answer === 200),
      [],
      "no /readyz sent after shutdown began was answered 200",
    );

    const problems = traces.flatMap((tr) => sequenceProblems(tr).map((p) => `${tr.name}: ${p}`));
    assert.deepEqual(problems.slice(0, 10), [], `${problems.length} problems with the sequences`);
    const started2 = next.lines.filter((l) => l.includes('"stream started"')).length;
    assert.ok(started2 >= STREAMS, `the next server served every client (${started2} stream starts)`);
  });
});

/** Resolves once `check()` holds, checked every 20 ms; rejects after `timeoutMs`. */
async function until(check: () => boolean, timeoutMs: number, what: string, why?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why ? `: ${why()}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** "200 until 3 ms, 503 at 4-5 ms, ECONNREFUSED from 6 ms": each run of equal answers with its times. */
/** A /readyz request: when it was sent, when it was answered, and with what (a status or an error code). */
interface Probe {
  sentAt: number;
  at: number;
  answer: number | string;
}

function summarizeProbes(probes: readonly Probe[], since: number): string {
  const runs: string[] = [];
  let current: { answer: number | string; from: number; to: number; n: number } | undefined;
  for (const p of probes) {
    if (current?.answer === p.answer) {
      current.to = p.at - since;
      current.n++;
    } else {
      if (current) runs.push(`${current.answer} x${current.n} (${current.from}..${current.to} ms)`);
      current = { answer: p.answer, from: p.at - since, to: p.at - since, n: 1 };
    }
  }
  if (current) runs.push(`${current.answer} x${current.n} (${current.from}..${current.to} ms)`);
  return runs.join(", ") || "no probe";
}
