import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { startServer, type TestServer } from "./support/server.js";

// examples/go: a grpc-go client (Debian's golang-google-grpc-dev, stubs from
// protoc-gen-go and protoc-gen-go-grpc) built and run exactly as the README
// says, against the real server. No skip when Go is missing: scripts/setup.sh
// installs it, and a machine without it must fail here.

const run = promisify(execFile);

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

describe("examples/go (grpc-go)", () => {
  let srv: TestServer;
  let work: string;

  before(async () => {
    srv = await startServer();
    work = mkdtempSync(join(tmpdir(), "go-example-"));
  });
  after(async () => {
    await srv?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** examples/go/run.sh with `args`; OUT keeps one workspace, so the second run reuses the build. */
  async function example(args: string[]): Promise<Outcome> {
    try {
      const { stdout, stderr } = await run(
        "bash",
        ["examples/go/run.sh", "-target", `127.0.0.1:${srv.port}`, ...args],
        {
          env: { ...process.env, OUT: work },
          timeout: 180_000,
        },
      );
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      if (typeof err.code !== "number") throw e;
      return { code: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  }

  it("should build, check health and stream `limit` greetings", async () => {
    const out = await example(["-name", "Gopher", "-limit", "3", "-start-at", "10", "-interval", "0s"]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /^health: SERVING$/m);
    assert.equal(
      out.stdout,
      [
        "10: Hello Gopher, this is 10 time stream message.",
        "11: Hello Gopher, this is 11 time stream message.",
        "12: Hello Gopher, this is 12 time stream message.",
        "",
      ].join("\n"),
    );
  });

  it("should end with DeadlineExceeded after the first message when its deadline passes", async () => {
    const out = await example(["-name", "Late", "-limit", "0", "-interval", "1m", "-timeout", "500ms"]);
    assert.notEqual(out.code, 0);
    assert.equal(out.stdout, "0: Hello Late, this is 0 time stream message.\n");
    assert.match(out.stderr, /code = DeadlineExceeded/);
  });
});
