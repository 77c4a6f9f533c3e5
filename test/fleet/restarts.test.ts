import assert from "node:assert/strict";
import { setMaxListeners } from "node:events";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser } from "playwright-core";
import { StreamService } from "../../gen/stream/v1/stream_pb.js";
import { buildWeb } from "../../web/build.js";
import {
  type BrowserClient,
  launchChromium,
  openTab,
  startEventSourceClient,
  startPageClient,
} from "../support/browser-clients.js";
import { type Fleet, type StreamStart, settlesWithin, startFleet } from "../support/fleet.js";
import {
  type ClientPlan,
  type Endpoints,
  nodeClientKinds,
  type RunningClient,
  startClient,
} from "../support/resuming-clients.js";
import { percentile, sequenceProblems, summaryTable, type Trace } from "../support/traces.js";

// Issue 11's proof that restarts lose nothing: deploy/nginx as shipped in
// front of three instances and 300 resuming clients of every kind; then
// SIGTERM one instance, SIGKILL another, and restart all three one at a time,
// each once /readyz answers. Every client must see its whole sequence, each
// counter once, and streams must move to the instances that are alive. The
// figures it prints are the ones in docs/deploy.md.

const CLIENTS = 300;
const PAGES = 4;
const EVENT_SOURCES = 4;
/** How long a stream lasts unbroken: the setup and every event must fit inside it. */
const RUN_MS = 50_000;
/** Intervals from 100 to 200 ms. */
const intervalOf = (n: number) => 100 + (n % 5) * 25;

describe("three instances behind nginx, 300 resuming clients of every kind", () => {
  let fleet: Fleet;
  let browser: Browser;
  let browserClients: BrowserClient[] = [];
  const stopClients = new AbortController();
  // Every client listens on it (Node warns past 10 listeners).
  setMaxListeners(CLIENTS * 4, stopClients.signal);

  before(async () => {
    await buildWeb();
    [fleet, browser] = await Promise.all([startFleet({ size: 3 }), launchChromium()]);
  });

  after(async () => {
    stopClients.abort();
    await Promise.allSettled(browserClients.map((c) => c.stop()));
    await browser?.close();
    await fleet?.stop();
  });

  it("should deliver every counter exactly once through SIGTERM, SIGKILL and a rolling restart", {
    timeout: 150_000,
  }, async (t) => {
    const nginx = fleet.nginx;
    assert.ok(nginx);
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const endpoints: Endpoints = { h1: nginx.httpUrl, h2: nginx.h2cUrl };
    let started = Date.now();
    const log = (what: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);

    const plans: ClientPlan[] = Array.from({ length: CLIENTS - PAGES - EVENT_SOURCES }, (_, n) => {
      const kind = nodeClientKinds[n % nodeClientKinds.length] as ClientPlan["kind"];
      const intervalMs = intervalOf(n);
      // Different start counters, so that a stream that went to the wrong client would show.
      return { kind, name: `fleet ${kind} ${n}`, startAt: n * 7, limit: Math.round(RUN_MS / intervalMs), intervalMs };
    });
    // Browser tabs first, all of them loaded before any stream starts: opening one takes seconds on a busy machine.
    const tabs = await Promise.all([
      ...Array.from({ length: PAGES }, () => openTab(browser, nginx.httpUrl)),
      ...Array.from({ length: EVENT_SOURCES }, () => openTab(browser, `${nginx.httpUrl}/healthz`)),
    ]);
    log("browser tabs open");
    started = Date.now();
    const nodeClients: RunningClient[] = plans.map((p) => startClient(p, endpoints, stopClients.signal));
    browserClients = await Promise.all(
      tabs.map((tab, n) =>
        n < PAGES
          ? startPageClient(tab, `fleet page ${n}`, intervalOf(n))
          : startEventSourceClient(
              tab,
              nginx.httpUrl,
              `fleet eventsource ${n - PAGES}`,
              intervalOf(n),
              Math.round(RUN_MS / intervalOf(n)),
            ),
      ),
    );
    log("browser streams started");
    const traces = async (): Promise<Trace[]> => [
      ...nodeClients.map((c) => c.trace),
      ...(await Promise.all(browserClients.map((c) => c.refresh()))),
    ];

    /** Resolves once every client that has not finished received a message after `since`. */
    const allStreamingAfter = async (since: number, what: string, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const behind = (await traces()).filter((tr) => tr.outcome === "running" && (tr.arrivals.at(-1) ?? 0) <= since);
        if (behind.length === 0) return;
        if (Date.now() > deadline) {
          const show = (tr: Trace) => {
            const b = tr.breaks.at(-1);
            return `${tr.name} (${b ? `${b.code}: ${b.message}; then ${b.failedAttempts.join("; ")}` : "no break"})`;
          };
          assert.fail(
            `${behind.length} clients got nothing after ${what} within ${timeoutMs} ms: ${behind.slice(0, 5).map(show).join(", ")}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };

    await allStreamingAfter(started, "the start", 30_000);
    const marks: Array<{ at: number; what: string }> = [];
    const mark = (what: string) => {
      marks.push({ at: Date.now(), what });
      log(what);
    };
    mark("all streaming");

    // A supervisor (systemd, Kubernetes) starts a stopped instance again, on the same port, so nginx's
    // list holds. While it starts, the clients go on at the other instances.
    mark("SIGTERM slot 0, started again");
    assert.equal(await fleet.signal(0, "SIGTERM"), 0, "a drained instance exits 0");
    await Promise.all([fleet.start(0), allStreamingAfter(marks.at(-1)?.at ?? 0, "SIGTERM")]);

    mark("SIGKILL slot 1, started again");
    assert.equal(await fleet.signal(1, "SIGKILL"), "SIGKILL");
    await Promise.all([fleet.start(1), allStreamingAfter(marks.at(-1)?.at ?? 0, "SIGKILL")]);

    // One at a time, each ready (/readyz 200) before the next gets its SIGTERM.
    await fleet.rollingRestart({
      before: (slot) => mark(`rolling restart: slot ${slot}`),
      meanwhile: (slot) => allStreamingAfter(marks.at(-1)?.at ?? 0, `the restart of slot ${slot}`),
    });
    mark("rolling restart done");

    // A restarted instance is back in rotation at once: least_conn sends new streams to the emptiest.
    const probeOwners: number[] = [];
    const probe = createClient(StreamService, createConnectTransport({ baseUrl: nginx.httpUrl, httpVersion: "1.1" }));
    for (let n = 0; n < 12; n++) {
      const name = `fleet probe ${n}`;
      for await (const _ of probe.stream({ name, limit: 1n })) {
        // one message
      }
      probeOwners.push((await fleet.servedBy(name)).slot);
    }

    // Node clients and EventSources end at their limit; the pages have none, and are stopped.
    await settlesWithin(Promise.all(nodeClients.map((c) => c.done)), RUN_MS + 30_000 - (Date.now() - started));
    await allEventSourcesDone(browserClients, 30_000);
    const final = [...nodeClients.map((c) => c.trace), ...(await Promise.all(browserClients.map((c) => c.stop())))];
    browserClients = [];
    log("all clients done");
    lag.disable();
    const cpu = process.cpuUsage();
    t.diagnostic(
      `test process cpu: user ${cpu.user / 1e6} s, system ${cpu.system / 1e6} s over ${(Date.now() - started) / 1000} s`,
    );

    // The report: spread per phase, time to resume per phase and per client kind.
    const starts = fleet.streamStarts().filter((s) => !s.name.startsWith("fleet probe"));
    const phases = marks.map((m, i) => ({ ...m, end: marks[i + 1]?.at ?? Number.POSITIVE_INFINITY }));
    const spread = phases.map((p, i) => {
      const inPhase = starts.filter((s) => (i === 0 ? true : s.at >= p.at) && s.at < p.end);
      return { what: p.what, bySlot: [0, 1, 2].map((slot) => inPhase.filter((s) => s.slot === slot).length) };
    });
    const breaksIn = (p: (typeof phases)[number]) =>
      final.flatMap((tr) => tr.breaks.filter((b) => b.at >= p.at && b.at < p.end && b.resumeMs !== undefined));
    const lines = [
      `${CLIENTS} clients, ${final.reduce((n, tr) => n + tr.counters.length, 0)} messages; event loop delay of the clients' process p50 ${(lag.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms`,
      "",
      "| phase | streams started on slot 0 / 1 / 2 | breaks | resume p50 | resume p99 |",
      "| --- | --- | ---: | ---: | ---: |",
      ...phases.map((p, i) => {
        const times = breaksIn(p).map((b) => b.resumeMs as number);
        const ms = (v: number) => (Number.isNaN(v) ? "-" : `${Math.round(v)} ms`);
        return `| ${p.what} | ${spread[i]?.bySlot.join(" / ")} | ${times.length} | ${ms(percentile(times, 50))} | ${ms(percentile(times, 99))} |`;
      }),
      "",
      summaryTable(
        final,
        phases.filter((p) => breaksIn(p).length > 0),
      ),
      "",
      `final placement (slot of each client's last stream): ${finalPlacement(final, starts).join(" / ")}; 12 new streams after the rolling restart went to slots ${probeOwners.join(", ")}`,
      `fleet: ${fleet.events.map((e) => `${((e.at - started) / 1000).toFixed(1)} s slot ${e.slot} ${e.what}${e.exit !== undefined ? ` ${e.exit} after ${e.afterMs} ms` : ""}${e.clean === false ? " (grace period over: sockets cut)" : ""}`).join("; ")}`,
    ];
    t.diagnostic(`restart proof report\n${lines.join("\n")}`);

    const problems = final.flatMap((tr) =>
      sequenceProblems(tr, tr.kind === "browser-page" ? Math.round(RUN_MS / 200) : 1).map((p) => `${tr.name}: ${p}`),
    );
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems with the sequences`);
    const neverCut = final.filter((tr) => tr.breaks.length === 0).map((tr) => tr.name);
    assert.deepEqual(neverCut, [], "every client's stream was cut at least once (or the run proved nothing for it)");
    for (const tr of final) {
      assert.ok(
        tr.breaks.every((b) => b.resumeMs !== undefined),
        `${tr.name} resumed after every break`,
      );
    }

    // Spread: at the start over all three; at the end over the two that took the streams of the last
    // step; and the last one restarted (empty) takes the new streams.
    const fair = (bySlot: readonly number[], slots: number[], what: string) => {
      const total = bySlot.reduce((a, b) => a + b, 0);
      for (const slot of slots) {
        assert.ok((bySlot[slot] ?? 0) >= total / 5, `${what}: slot ${slot} has a fair share of ${bySlot.join(" / ")}`);
      }
    };
    fair(spread[0]?.bySlot ?? [], [0, 1, 2], "streams at the start");
    fair(finalPlacement(final, starts), [0, 1], "clients' last streams");
    assert.ok(probeOwners.filter((s) => s === 2).length >= 6, `new streams go to the restarted slot 2: ${probeOwners}`);
  });
});

/** Resolves once every EventSource closed at its limit (the 204 after the last event), or after timeoutMs. */
async function allEventSourcesDone(clients: BrowserClient[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ts = await Promise.all(clients.map((c) => c.refresh()));
    if (ts.every((tr) => tr.kind !== "browser-eventsource" || tr.outcome !== "running")) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** How many clients' last stream each slot served. */
function finalPlacement(traces: readonly Trace[], starts: readonly StreamStart[]): number[] {
  const last = new Map<string, number>();
  for (const s of starts) last.set(s.name, s.slot);
  const counts = [0, 0, 0];
  for (const tr of traces) {
    const slot = last.get(tr.name);
    if (slot !== undefined) counts[slot] = (counts[slot] ?? 0) + 1;
  }
  return counts;
}
