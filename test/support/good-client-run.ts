import * as http from "node:http";

// The well-behaved client of the attack suite, as a process of its own: an
// attack driven from the test process stalls that process's event loop, and
// a good client living there would measure its own stall, not the server's.
// Started by good-client.ts with one JSON argument (GoodClientOptions); it
// prints "ready" once its stream delivered a first message, and its figures
// as one JSON line (GoodClientReport) when its stdin ends.

interface Options {
  url: string;
  intervalMs: number;
  probeEveryMs: number;
  freshProbes: boolean;
}

const options = JSON.parse(process.argv[2] ?? "{}") as Options;
const keptAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });

let worstHealthzMs = 0;
let probes = 0;
let probeFailures = 0;
let firstProbeFailure: string | undefined;
let running = true;

function probe(): Promise<void> {
  const started = performance.now();
  return new Promise((resolve) => {
    const fail = (why: string) => {
      probeFailures++;
      firstProbeFailure ??= why;
      worstHealthzMs = Math.max(worstHealthzMs, performance.now() - started);
      resolve();
    };
    const req = http.get(`${options.url}/healthz`, { agent: options.freshProbes ? false : keptAgent }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode === 200) probes++;
        else return fail(`/healthz answered ${res.statusCode}`);
        worstHealthzMs = Math.max(worstHealthzMs, performance.now() - started);
        resolve();
      });
      res.on("error", (e) => fail(e.message));
    });
    req.setTimeout(5000, () => req.destroy(new Error("/healthz did not answer within 5 s")));
    req.on("error", (e) => fail(e.message));
  });
}

const probing = (async () => {
  while (running) {
    await probe();
    await new Promise((resolve) => setTimeout(resolve, options.probeEveryMs));
  }
})();

const arrivals: number[] = [];
let streamError: string | undefined;
let readySent = false;
const streamReq = http.get(
  `${options.url}/stream?name=good&interval=${options.intervalMs / 1000}s`,
  { agent: false },
  (res) => {
    if (res.statusCode !== 200) streamError = `GET /stream answered ${res.statusCode}`;
    let pending = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      pending += chunk;
      let nl = pending.indexOf("\n");
      while (nl !== -1) {
        arrivals.push(performance.now());
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
      }
      if (!readySent && arrivals.length > 0) {
        readySent = true;
        process.stdout.write("ready\n");
      }
    });
    res.on("end", () => {
      if (running) streamError ??= "the good stream ended early";
    });
    res.on("error", (e) => {
      if (running) streamError ??= e.message;
    });
  },
);
streamReq.on("error", (e) => {
  if (running) streamError ??= e.message;
});

process.stdin.resume();
process.stdin.on("end", async () => {
  const stoppedAt = performance.now();
  running = false;
  streamReq.destroy();
  await probing;
  keptAgent.destroy();
  let worstGapMs = 0;
  for (let i = 1; i < arrivals.length; i++) {
    worstGapMs = Math.max(worstGapMs, (arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0));
  }
  // A stream that stalled at the end and never resumed counts too.
  const last = arrivals.at(-1);
  if (last !== undefined) worstGapMs = Math.max(worstGapMs, stoppedAt - last);
  const report = {
    messages: arrivals.length,
    worstGapMs: Math.round(worstGapMs),
    worstHealthzMs: Math.round(worstHealthzMs),
    probes,
    probeFailures,
    ...(firstProbeFailure !== undefined ? { firstProbeFailure } : {}),
    ...(streamError !== undefined ? { streamError } : {}),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
});
