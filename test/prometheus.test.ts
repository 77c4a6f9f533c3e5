import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "../src/shared/duration.js";
import { type ClientCase, clientCases, streamClient } from "./support/clients.js";
import { type Prometheus, promtool, startPrometheus } from "./support/prometheus.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// /metrics as Prometheus itself reads it: linted by promtool, scraped and
// queried by a real Prometheus server, and the config and alerting rules in
// deploy/prometheus/ checked and unit-tested by promtool.

const deploy = join(import.meta.dirname, "..", "deploy", "prometheus");

/** Streams that run until `stop()`, one per client case, plus GET /stream as NDJSON and as SSE. */
function openStreams(url: string, cases: readonly ClientCase[], plain: boolean): { stop(): Promise<void> } {
  const abort = new AbortController();
  const rpcs = cases.map(async (c) => {
    try {
      for await (const _ of streamClient(c, url).stream({ interval: durationFromMs(100) }, { signal: abort.signal })) {
      }
    } catch (e) {
      if (!abort.signal.aborted) throw ConnectError.from(e);
    }
  });
  const gets = (plain ? ["application/x-ndjson", "text/event-stream"] : []).map(
    (accept) =>
      new Promise<void>((resolve, reject) => {
        const req = http.get(`${url}/stream?interval=0.1s`, { agent: false, headers: { accept } }, (res) => {
          res.resume();
          res.on("close", resolve);
        });
        req.on("error", (e) => (abort.signal.aborted ? resolve() : reject(e)));
        abort.signal.addEventListener("abort", () => req.destroy());
      }),
  );
  return {
    async stop() {
      abort.abort();
      await Promise.all([...rpcs, ...gets]);
    },
  };
}

/** GET /metrics over a connection that closes after the response. */
function scrape(srv: TestServer): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`${srv.url}/metrics`, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${res.statusCode}`))));
      })
      .on("error", reject);
  });
}

/** One rejected call and one that ends by its limit: the counters by reason and by code get samples. */
async function endTwoCalls(url: string): Promise<void> {
  const grpc = streamClient(clientCases[0] as ClientCase, url);
  for await (const _ of grpc.stream({ limit: 2n, interval: durationFromMs(0) })) {
  }
  await assert.rejects(async () => {
    for await (const _ of grpc.stream({ name: "x".repeat(101) })) {
    }
  });
}

describe("GET /metrics under `promtool check metrics`", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  it("should pass with every series present: live streams of every protocol, ended ones, an error", async () => {
    await endTwoCalls(srv.url);
    const streams = openStreams(srv.url, clientCases, true);
    try {
      await eventually(() => srv.server.streams.liveCount === clientCases.length + 2, 10_000, "every stream to open");
      const text = await scrape(srv);
      for (const series of [
        'streams_live{protocol="grpc"} 1',
        'streams_live{protocol="grpc-web"} 2',
        'streams_live{protocol="connect"} 4',
        'streams_live{protocol="ndjson"} 1',
        'streams_live{protocol="sse"} 1',
        'streams_started_total{protocol="grpc"} 2',
        'streams_ended_total{reason="limit"} 1',
        'streams_ended_total{reason="error"} 1',
        'request_errors_total{code="invalid_argument"} 1',
        "stream_duration_seconds_count 1",
        "stream_messages_sent_total ",
        "nodejs_eventloop_lag_p99_seconds ",
        "process_cpu_user_seconds_total ",
      ]) {
        // "name value" must be a whole line; "name " only names the series.
        const found = text.split("\n").some((l) => (series.endsWith(" ") ? l.startsWith(series) : l === series));
        assert.ok(found, `no sample ${series} in\n${text}`);
      }
      const lint = await promtool(["check", "metrics"], text);
      assert.deepEqual(lint, { code: 0, stdout: "", stderr: "" });
    } finally {
      await streams.stop();
    }
  });

  it("should fail on a lint problem, so the check above can fail", async () => {
    const text = `${await scrape(srv)}# HELP queue_length_total Not a counter.\n# TYPE queue_length_total gauge\nqueue_length_total 3\n`;
    const lint = await promtool(["check", "metrics"], text);
    assert.notEqual(lint.code, 0);
    assert.match(lint.stderr, /queue_length_total non-counter metrics should not have "_total" suffix/);
  });
});

describe("a real Prometheus scraping the service", () => {
  let srv: TestServer;
  let prom: Prometheus;
  const rules = join(deploy, "rules.yml");
  before(async () => {
    srv = await startServer();
    prom = await startPrometheus({ targets: [`127.0.0.1:${srv.port}`], ruleFiles: [rules] });
  });
  after(async () => {
    await prom?.close();
    await srv?.close();
  });

  it("should read streams_live as the streams open now, and stream_messages_sent_total growing", async () => {
    const grpc = clientCases.filter((c) => c.protocol === "grpc");
    const connect = clientCases.filter((c) => c.protocol === "connect").slice(0, 2);
    const cases = [...grpc, ...grpc, ...grpc, ...connect];
    const streams = openStreams(srv.url, cases, false);
    try {
      await eventually(() => srv.server.streams.liveCount === 5, 10_000, "five streams to open");
      const opened = Date.now() / 1000;

      const [up] = await prom.scrapedAfter('up{job="stream-service"}', opened);
      assert.equal(up?.value, 1);
      const live = await prom.scrapedAfter('streams_live{job="stream-service"}', opened);
      const byProtocol = Object.fromEntries(live.map((s) => [s.metric.protocol, s.value]));
      assert.deepEqual(byProtocol, { grpc: 3, connect: 2 });

      const [sent] = await prom.scrapedAfter('stream_messages_sent_total{job="stream-service"}', opened);
      assert.ok(sent !== undefined);
      // Every stream sent its first message at once, before that scrape.
      assert.ok(sent.value >= 5, `sent ${sent.value}`);
      assert.ok(sent.value <= srv.server.streams.messagesSent);
      const [later] = await prom.scrapedAfter('stream_messages_sent_total{job="stream-service"}', sent.time);
      assert.ok(later !== undefined && later.value > sent.value, `${sent.value}, then ${later?.value}`);
    } finally {
      await streams.stop();
    }
    const ended = Date.now() / 1000;
    await eventually(() => srv.server.streams.liveCount === 0, 5000, "the streams to end");
    const live = await prom.scrapedAfter('streams_live{job="stream-service"}', ended);
    assert.deepEqual(
      live.map((s) => s.value),
      live.map(() => 0),
    );
  });

  it("should evaluate every rule of deploy/prometheus/rules.yml without error, on metrics the service has", async () => {
    const text = readFileSync(rules, "utf8");
    const alerts = [...text.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]);
    await endTwoCalls(srv.url);
    const [scraped] = await prom.scrapedAfter('up{job="stream-service"}', Date.now() / 1000);
    assert.ok(scraped !== undefined);
    // Rules evaluated after this scrape saw the calls above.
    const since = scraped.time;
    type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string };
    let loaded: Rule[] = [];
    const deadline = performance.now() + 15_000;
    for (;;) {
      const data = (await prom.api("/api/v1/rules")) as { groups: { rules: Rule[] }[] };
      loaded = data.groups.flatMap((g) => g.rules);
      if (loaded.length > 0 && loaded.every((r) => Date.parse(r.lastEvaluation) / 1000 > since)) break;
      if (performance.now() > deadline) throw new Error(`rules not evaluated within 15 s: ${JSON.stringify(loaded)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(
      loaded.map((r) => [r.name, r.health, r.lastError ?? ""]),
      alerts.map((a) => [a, "ok", ""]),
    );
    // A rule on a misspelt metric would evaluate fine and never fire: every
    // metric the rules select must have a series from the service.
    const names = new Set([...text.matchAll(/(\w+)\{job="stream-service"/g)].map((m) => m[1]));
    assert.ok(names.size >= 5, [...names].join(" "));
    for (const name of names) {
      const samples = await prom.query(`${name}{job="stream-service"}`);
      assert.ok(samples.length > 0, `no series ${name} scraped from the service`);
    }
  });
});

describe("deploy/prometheus/", () => {
  it("should hold a scrape config that `promtool check config` accepts", async () => {
    const r = await promtool(["check", "config", "prometheus.yml"], "", deploy);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS: prometheus\.yml is valid/);
  });

  it("should hold alerting rules that `promtool check rules` accepts", async () => {
    const r = await promtool(["check", "rules", "rules.yml"], "", deploy);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS: 5 rules found/);
  });

  it("should pass the rules' unit tests: each alert fires, and stays quiet when it should", async () => {
    const r = await promtool(["test", "rules", "rules.test.yml"], "", deploy);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Every alert has a test that expects it to fire.
    const rules = readFileSync(join(deploy, "rules.yml"), "utf8");
    const tests = readFileSync(join(deploy, "rules.test.yml"), "utf8");
    for (const [, alert] of rules.matchAll(/^\s*- alert: (\w+)$/gm)) {
      const firing = new RegExp(`alertname: ${alert}\\n\\s*exp_alerts:\\n\\s*- exp_labels:`);
      assert.match(tests, firing, `no test expects ${alert} to fire`);
    }
  });
});
