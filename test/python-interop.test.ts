import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { generatePythonStubs, type PythonStubs, python } from "./support/python.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// Python grpcio (Debian's python3-grpcio), a client nobody on this project
// wrote, in its own process, against the real server. The stubs come from
// proto/ at test time with python3-grpc-tools. No skip when Python is missing:
// scripts/setup.sh installs it, and a machine without it must fail here.

const run = promisify(execFile);

describe("Python grpcio client", () => {
  let srv: TestServer;
  let stubs: PythonStubs;

  before(async () => {
    stubs = await generatePythonStubs();
    srv = await startServer();
  });
  after(async () => {
    await srv?.close();
    stubs?.remove();
  });

  const call = (spec: Record<string, unknown>) => stubs.call(`127.0.0.1:${srv.port}`, spec);

  it("should stream `limit` greetings and end OK", async () => {
    const got = await call({ op: "stream", name: "Py", limit: 3, interval_ms: 0 });
    assert.equal(got.code, "OK");
    assert.deepEqual(
      got.messages.map((m) => [m.counter, m.message]),
      [
        [0, "Hello Py, this is 0 time stream message."],
        [1, "Hello Py, this is 1 time stream message."],
        [2, "Hello Py, this is 2 time stream message."],
      ],
    );
  });

  it("should resume from start_at", async () => {
    const got = await call({ op: "stream", name: "Py", limit: 2, start_at: 41, interval_ms: 0 });
    assert.equal(got.code, "OK");
    assert.deepEqual(
      got.messages.map((m) => m.counter),
      [41, 42],
    );
  });

  it("should end the stream on the server when the client cancels", async () => {
    const got = await call({ op: "stream", name: "PyCancel", interval_ms: 20, cancel_after: 2 });
    assert.equal(got.code, "CANCELLED");
    assert.equal(got.messages.length, 2);
    await eventually(
      () => srv.logs.some((l) => l.msg === "stream ended" && l.name === "PyCancel" && l.reason === "cancelled"),
      5000,
      "the server to log the cancelled stream",
    );
  });

  it("should end with DEADLINE_EXCEEDED when the client's deadline passes", async () => {
    const got = await call({ op: "stream", name: "PyDeadline", interval_ms: 60_000, timeout: 0.5 });
    assert.equal(got.code, "DEADLINE_EXCEEDED");
    assert.equal(got.messages.length, 1, "the first message goes out at once");
  });

  it("should get INVALID_ARGUMENT for a bad request", async () => {
    const got = await call({ op: "stream", name: "x".repeat(101) });
    assert.equal(got.code, "INVALID_ARGUMENT");
    assert.match(got.details, /name.*100/);
    assert.equal(got.messages.length, 0);
  });

  it("should get SERVING from the health service, and NOT_FOUND for an unknown service", async () => {
    assert.deepEqual(await call({ op: "check", service: "" }), {
      messages: [],
      status: "SERVING",
      code: "OK",
      details: "",
    });
    assert.equal((await call({ op: "check", service: "stream.v1.StreamService" })).status, "SERVING");
    assert.equal((await call({ op: "check", service: "nope" })).code, "NOT_FOUND");
  });

  it("should run examples/python/run.sh, the documented one-command example", async () => {
    const { stdout } = await run(
      "bash",
      [
        "examples/python/run.sh",
        "--target",
        `127.0.0.1:${srv.port}`,
        "--name",
        "Ada",
        "--limit",
        "2",
        "--interval-ms",
        "0",
      ],
      { env: { ...process.env, PYTHON: python }, timeout: 30_000 },
    );
    assert.equal(
      stdout,
      "0: Hello Ada, this is 0 time stream message.\n1: Hello Ada, this is 1 time stream message.\n",
    );
  });
});
