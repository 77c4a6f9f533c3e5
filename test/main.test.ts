import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startProcess, startServerProcess, stop } from "./support/process.js";

describe("npm start (src/main.ts)", () => {
  it("should say in one line where it listens, and exit 0 on SIGINT", async () => {
    const server = await startServerProcess();
    const listening = server.lines.filter((l) => l.includes("listening on"));
    assert.equal(listening.length, 1);
    const line = JSON.parse(listening[0] as string);
    assert.equal(line.msg, `listening on http://127.0.0.1:${server.port}`);
    assert.equal(line.address, "127.0.0.1");
    assert.equal(await stop(server, "SIGINT"), 0);
  });

  it("should refuse a bad flag with a message naming it and exit status 2, before listening", async () => {
    const proc = startProcess("src/main.ts", ["--default-interval", "soon"]);
    assert.equal(await proc.exited, 2);
    assert.match(proc.stderr(), /^configuration error: --default-interval: expected a duration/);
    assert.equal(proc.lines.length, 0);
  });
});
