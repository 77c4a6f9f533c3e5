import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { configHelp, options } from "../src/config/config.js";
import { startProcess } from "./support/process.js";

// Every command a user types, as typed (through npm), asked for help; and the
// script behind it given a flag it does not know. Real processes.

const run = promisify(execFile);
const root = new URL("..", import.meta.url);

const entries = [
  // The server's help is derived from the options' declaration: the whole of it must reach stdout.
  { npm: ["start"], script: "src/main.ts", usage: "usage: npm start -- ", help: configHelp() },
  { npm: ["run", "client"], script: "src/client-main.ts", usage: "usage: npm run client -- " },
  { npm: ["run", "bench"], script: "bench/run.ts", usage: "usage: npm run bench -- " },
];

for (const entry of entries) {
  describe(`npm ${entry.npm.join(" ")}`, () => {
    it("should print its usage on stdout for --help and exit 0", async () => {
      // execFile rejects on a non-zero exit status, so reaching the asserts means 0.
      const { stdout } = await run("npm", [...entry.npm, "--", "--help"], { cwd: root, timeout: 60_000 });
      assert.ok(stdout.includes(entry.usage), `stdout lacks ${JSON.stringify(entry.usage)}:\n${stdout}`);
      if (entry.help !== undefined) assert.ok(stdout.includes(entry.help), `stdout lacks the whole help:\n${stdout}`);
    });

    it("should refuse an unknown flag with one line, then its usage, and exit 2 without a stack trace", async () => {
      const proc = startProcess(entry.script, ["--no-such-flag"]);
      assert.equal(await proc.exited, 2);
      const [first, ...rest] = proc.stderr().split("\n");
      assert.match(first as string, /--no-such-flag/);
      assert.match(rest.join("\n"), new RegExp(`^${entry.usage}`));
      assert.doesNotMatch(proc.stderr(), /^\s+at /m, "a stack trace");
      assert.deepEqual(proc.lines, [], "nothing on stdout");
    });
  });
}

describe("configHelp()", () => {
  it("should list every flag with its environment variable and default", () => {
    const help = configHelp();
    for (const o of Object.values(options)) {
      assert.ok(help.includes(`--${o.flag} (env ${o.env}`), `--help lacks --${o.flag}`);
    }
    assert.match(help, /--port \(env PORT; default 8080\)/);
    assert.match(help, /--default-interval \(env DEFAULT_INTERVAL; default 2s\)/);
  });
});
