import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";

// scripts/setup.sh, which `npm test` runs first. Only --check mode here: it
// never calls apt-get, so an empty dpkg database (DPKG_ADMINDIR) can play the
// fresh machine without anything being installed.

const run = promisify(execFile);
const script = new URL("../scripts/setup.sh", import.meta.url).pathname;
const list = /^packages=\(\n([\s\S]*?)^\)/m.exec(readFileSync(script, "utf8"))?.[1] ?? "";
const packages = [...list.matchAll(/^ {2}([a-z0-9][a-z0-9.+-]+)/gm)].map((m) => m[1]);

describe("scripts/setup.sh --check", () => {
  const emptyDpkg = mkdtempSync(join(tmpdir(), "setup-test-"));
  writeFileSync(join(emptyDpkg, "status"), "");
  after(() => rmSync(emptyDpkg, { recursive: true, force: true }));

  it("should find every package installed, since npm test ran it first", async () => {
    const { stdout } = await run("bash", [script, "--check"], { timeout: 10_000 });
    assert.equal(stdout, "setup: system packages ready\n");
  });

  it("should name in one line every missing package and the command that installs it, and exit 1", async () => {
    assert.ok(packages.length >= 10, `found ${packages.length} packages in the script`);
    const failed = await run("bash", [script, "--check"], {
      env: { ...process.env, DPKG_ADMINDIR: emptyDpkg },
      timeout: 10_000,
    }).then(
      () => assert.fail("exited 0"),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    assert.equal(failed.code, 1);
    assert.equal(failed.stdout, "");
    const lines = failed.stderr.split("\n");
    assert.equal(lines.length, 2, `one line and its newline:\n${failed.stderr}`);
    const [missing, command] = (lines[0] as string).split("; install them with: ");
    for (const p of packages) {
      assert.ok(missing?.split(/[ ,:]+/).includes(p as string), `${p} not named`);
      assert.ok(command?.split(" ").includes(p as string), `${p} not in the command`);
    }
    assert.match(command as string, /apt-get update && (sudo )?apt-get install -y --no-install-recommends /);
  });
});
