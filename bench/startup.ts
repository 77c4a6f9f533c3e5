import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { build } from "../scripts/build.js";
import { median } from "./report.js";

// Time from spawn to the "listening on" log line: the production command
// against the development one, started in turns by this one script, so the
// noise of a shared machine falls on both alike.
//
//   node --import tsx bench/startup.ts [--runs 7]

const root = new URL("..", import.meta.url).pathname;
const serverArgs = ["--host", "127.0.0.1", "--port", "0"];

interface Command {
  title: string;
  argv: string[];
  /** npm is a parent of node: the signal goes to the process group this script made. */
  group: boolean;
}

const commands: Command[] = [
  { title: "`node dist/main.js` (production)", argv: [process.execPath, "dist/main.js", ...serverArgs], group: false },
  {
    title: "`node dist/src/main.js` (production, source maps off)",
    argv: [process.execPath, "dist/src/main.js", ...serverArgs],
    group: false,
  },
  {
    title: "`node --import tsx src/main.ts` (no npm, no page build)",
    argv: [process.execPath, "--import", "tsx", "src/main.ts", ...serverArgs],
    group: false,
  },
  { title: "`npm start` (development)", argv: ["npm", "start", "--", ...serverArgs], group: true },
];

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) end(child, true, "SIGKILL");
});

function end(child: ChildProcess, group: boolean, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(group ? -child.pid : child.pid, signal);
  } catch {
    // already gone
  }
}

/** Milliseconds from spawn to the listening line; the process is ended before this resolves. */
async function timeToListen(command: Command, timeoutMs: number): Promise<number> {
  const [cmd, ...args] = command.argv;
  if (cmd === undefined) throw new Error("empty command");
  const started = performance.now();
  const child = spawn(cmd, args, {
    cwd: root,
    env: { ...process.env, LOG_FORMAT: "json" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: command.group,
  });
  live.add(child);
  const exited = once(child, "exit");
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${command.title}: no listening line in ${timeoutMs} ms`)),
        timeoutMs,
      );
      child.once("exit", (code) => reject(new Error(`${command.title}: exited ${code} before listening`)));
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
        if (!line.includes('"listening on ')) return;
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
    });
  } finally {
    end(child, command.group, "SIGTERM");
    await exited;
    live.delete(child);
  }
}

const { values } = parseArgs({ options: { runs: { type: "string", default: "7" } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error("--runs: an integer from 1 to 50");

process.stderr.write("building dist/ (npm run build)\n");
await build();
const samples = commands.map(() => [] as number[]);
// One untimed start of each first: the first npm start also fills caches (tsx, esbuild).
for (const command of commands) await timeToListen(command, 60_000);
for (let run = 0; run < runs; run++) {
  for (const [i, command] of commands.entries()) {
    const ms = await timeToListen(command, 60_000);
    samples[i]?.push(ms);
    process.stderr.write(`run ${run + 1}/${runs} ${command.title}: ${ms.toFixed(0)} ms\n`);
  }
}
const baseline = median(samples[0] ?? []);
const lines = [
  `Start to "listening on", median of ${runs} runs each, started in turns (${new Date().toISOString().slice(0, 10)}, Node ${process.version}):`,
  "",
  "| command | median | runs (ms) | vs production |",
  "| --- | ---: | --- | ---: |",
  ...commands.map((command, i) => {
    const s = samples[i] ?? [];
    const m = median(s);
    return `| ${command.title} | ${m.toFixed(0)} ms | ${s.map((v) => v.toFixed(0)).join(", ")} | ${(m / baseline).toFixed(2)}x |`;
  }),
];
process.stdout.write(`${lines.join("\n")}\n`);
