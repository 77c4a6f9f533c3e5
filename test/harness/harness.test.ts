import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, test } from "node:test";
import { productionBuild } from "../../bench/production.js";
import { h2Get } from "../support/attack.js";
import { listening, type Proc, startCommand, stop } from "../support/process.js";
import { settledFds } from "../support/server-watch.js";
import { generators, kinds } from "./attacks.js";
import { seeded } from "./random.js";
import { processTree, runStep, totalFds, totalRss } from "./step.js";

// The generative attack harness: a seeded mix of the attack classes against
// `node dist/main.js` for HARNESS_SECONDS per configuration, with the bounds
// checked after every step. Any failure names the seed, the configuration and
// the step's plan, so HARNESS_SEED=N replays it.

const seed = Number(process.env.HARNESS_SEED ?? Math.floor(Math.random() * 2 ** 32));
const seconds = Number(process.env.HARNESS_SECONDS ?? 60);
console.log(`harness seed ${seed} — replay: HARNESS_SEED=${seed} npm run test:harness`);

const configurations: Record<string, string[]> = {
  "fast path on": ["--fast-path", "on"],
  "fast path off": ["--fast-path", "off"],
  "--workers 2": ["--workers", "2"],
};
const summaries: unknown[] = [];
after(() => {
  if (process.env.HARNESS_REPORT) writeFileSync(process.env.HARNESS_REPORT, JSON.stringify(summaries, null, 2));
});

const build = await productionBuild();

for (const [name, args] of Object.entries(configurations)) {
  test(`the server holds its bounds under a seeded mix of attacks (${name})`, async () => {
    const proc = startCommand(process.execPath, [build.ours, "--host", "127.0.0.1", "--port", "0", ...args], {
      // Logs as shipped (info): a line per stream is part of what each attack costs.
      env: { LOG_FORMAT: "json" },
    });
    try {
      const srv = await listening(proc);
      assert.equal(await h2Get(srv.url, "/healthz"), 200);
      const pid = srv.child.pid ?? 0;
      // Workers fork after the primary listens: wait until they are all there.
      const workers = args.includes("--workers") ? 2 : 0;
      while (processTree(pid).length < workers + 1) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      const pids = processTree(pid);
      await settledFds(pid);
      const base = { pids, rssMiB: totalRss(pids), fds: totalFds(pids) };
      const rnd = seeded(seed ^ [...name].reduce((a, c) => a + c.charCodeAt(0), 0));
      // Warm-up: one attack of every kind in turn, whose end is the RSS baseline (fds are held to the cold one).
      for (const kind of kinds) {
        const warmUp = [(generators[kind] as (typeof generators)[string])(rnd)];
        try {
          await runStep(srv.url, base, warmUp, rnd, false);
        } catch (e) {
          throw new Error(`seed ${seed}, ${name}, warm-up, plan ${JSON.stringify(warmUp)}: ${String(e)}${death(srv)}`);
        }
      }
      base.rssMiB = totalRss(pids);
      const rssSeries: number[] = [];
      const counted: Record<string, number> = {};
      const worst = { gap: 0, healthz: 0, rssPeak: base.rssMiB, rssAfter: 0, fdsAfter: 0, refusals: 0 };
      const deadline = performance.now() + seconds * 1000;
      let steps = 0;
      while (performance.now() < deadline) {
        const plans = Array.from({ length: rnd.int(1, 3) }, () =>
          (generators[rnd.pick(kinds)] as (typeof generators)[string])(rnd),
        );
        try {
          const f = await runStep(srv.url, base, plans, rnd);
          worst.gap = Math.max(worst.gap, f.worstGapMs);
          worst.healthz = Math.max(worst.healthz, Math.round(f.worstHealthzMs));
          worst.rssPeak = Math.max(worst.rssPeak, f.rssPeakMiB);
          worst.rssAfter = f.rssAfterMiB;
          rssSeries.push(round(f.rssAfterMiB));
          worst.fdsAfter = f.fdsAfter;
          worst.refusals += f.refusals;
        } catch (e) {
          throw new Error(
            `seed ${seed}, ${name}, step ${steps + 1}, plan ${JSON.stringify(plans)}: ${String(e)}${death(srv)}`,
          );
        }
        for (const p of plans) counted[p.kind] = (counted[p.kind] ?? 0) + 1;
        steps++;
      }
      const summary = {
        seed,
        configuration: name,
        steps,
        kinds: counted,
        worstGapMs: worst.gap,
        worstHealthzMs: worst.healthz,
        rssMiB: { baseline: round(base.rssMiB), peak: round(worst.rssPeak), after: round(worst.rssAfter) },
        rssAfterEachStepMiB: rssSeries,
        fds: { baseline: base.fds, after: worst.fdsAfter },
        refusals: worst.refusals,
      };
      summaries.push(summary);
      console.log(JSON.stringify(summary));
    } finally {
      await stop(proc, "SIGKILL");
    }
  });
}

/** If the server died, how: its exit status and the end of what it wrote to stderr, so the failure says why. */
function death(srv: Proc): string {
  const { exitCode, signalCode } = srv.child;
  if (exitCode === null && signalCode === null) return "";
  return `\nthe server exited (${exitCode ?? signalCode}); its stderr ended:\n${srv.stderr().slice(-4000)}`;
}

const round = (n: number) => Math.round(n * 10) / 10;
