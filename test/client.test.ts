import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Proc, type ServerProc, startProcess, startServerProcess, stop } from "./support/process.js";

// The Node client as a user runs it (npm run client), against the server as a
// user runs it (npm start), both real processes.

const counterOf = (line: string) => Number(/this is (\d+) time/.exec(line)?.[1]);
const greetings = (client: Proc) => client.lines.filter((l) => l.includes(" time stream message."));

describe("npm run client", () => {
  const procs: Proc[] = [];
  after(async () => {
    for (const p of procs) await stop(p, "SIGKILL");
  });
  async function server(port = 0): Promise<ServerProc> {
    const s = await startServerProcess(["--shutdown-grace", "2s"], port);
    procs.push(s);
    return s;
  }
  function client(args: string[]): Proc {
    const c = startProcess("src/client-main.ts", args);
    procs.push(c);
    return c;
  }

  for (const protocol of ["connect", "grpc", "grpcweb"]) {
    it(`should resume across a server restart with no gap and no duplicate (${protocol})`, async () => {
      const first = await server();
      const c = client([
        "--url",
        first.url,
        "--protocol",
        protocol,
        "--name",
        "Alice",
        "--interval",
        "100ms",
        "--limit",
        "12",
      ]);
      await c.waitUntil(() => greetings(c).length >= 3);
      assert.equal(await stop(first), 0);
      const second = await server(first.port);
      assert.equal(await c.exited, 0, c.stderr());
      await stop(second);
      const counters = greetings(c).map(counterOf);
      assert.deepEqual(counters, [...Array(12).keys()]);
      assert.match(c.stderr(), /reconnecting in \d+ ms/);
      assert.match(
        greetings(c)[0] ?? "",
        /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] Hello Alice, this is 0 time stream message\.$/,
      );
    });
  }

  it("should resume when the server dies without a goodbye (SIGKILL)", async () => {
    const first = await server();
    const c = client(["--url", first.url, "--name", "Bob", "--interval", "100ms", "--limit", "8", "--start-at", "100"]);
    await c.waitUntil(() => greetings(c).length >= 2);
    await stop(first, "SIGKILL");
    const second = await server(first.port);
    assert.equal(await c.exited, 0, c.stderr());
    await stop(second);
    assert.deepEqual(greetings(c).map(counterOf), [100, 101, 102, 103, 104, 105, 106, 107]);
  });

  it("should stop at once with a clear message and status 1 on INVALID_ARGUMENT", async () => {
    const s = await server();
    const c = client(["--url", s.url, "--name", "x".repeat(101)]);
    assert.equal(await c.exited, 1);
    assert.match(c.stderr(), /^error: InvalidArgument: name must be at most 100 characters/m);
    assert.doesNotMatch(c.stderr(), /reconnecting/);
  });

  it("should end cleanly with status 0 on Ctrl-C", async () => {
    const s = await server();
    const c = client(["--url", s.url, "--name", "Carol", "--interval", "1h"]);
    await c.waitUntil(() => greetings(c).length === 1);
    c.child.kill("SIGINT");
    assert.equal(await c.exited, 0);
    assert.match(c.stderr(), /stopped/);
  });

  it("should refuse a bad flag with usage and status 2", async () => {
    const c = client(["--protocol", "carrier-pigeon"]);
    assert.equal(await c.exited, 2);
    assert.match(c.stderr(), /usage: npm run client/);
  });
});
