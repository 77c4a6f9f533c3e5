import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { startServer, type TestServer } from "./support/server.js";

// `buf curl` (from the @bufbuild/buf package): a client written by the buf
// team, in another process, in Go. It calls with a schema read from proto/ or
// with none at all, discovering it through our reflection service, as an
// operator with only a URL would. Async execFile, never execFileSync: the
// server runs in this process and must keep answering.

const run = promisify(execFile);
const buf = "node_modules/.bin/buf";

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function bufCurl(args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(buf, ["curl", ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== "number") throw e;
    return { code: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

/** buf curl prints each message as indented JSON, one after the other. */
function messages(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split(/\n(?=\{)/)
    .filter((s) => s.length > 0)
    .map((s) => JSON.parse(s) as Record<string, unknown>);
}

const transports: { name: string; args: string[] }[] = [
  { name: "gRPC (h2c)", args: ["--protocol", "grpc", "--http2-prior-knowledge"] },
  { name: "gRPC-Web over HTTP/1.1", args: ["--protocol", "grpcweb"] },
  { name: "Connect over HTTP/1.1", args: ["--protocol", "connect"] },
  { name: "Connect over h2c", args: ["--protocol", "connect", "--http2-prior-knowledge"] },
];

const schemas: { name: string; args: string[] }[] = [
  { name: "with the schema from proto/", args: ["--schema", "proto"] },
  { name: "through server reflection, no schema", args: [] },
];

describe("buf curl", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  for (const t of transports) {
    for (const s of schemas) {
      it(`should stream over ${t.name} ${s.name}`, async () => {
        const out = await bufCurl([
          ...t.args,
          ...s.args,
          "--data",
          '{"name": "Curl", "limit": "2", "startAt": "5", "interval": "0s"}',
          `${srv.url}/stream.v1.StreamService/Stream`,
        ]);
        assert.equal(out.code, 0, out.stderr);
        assert.deepEqual(
          messages(out.stdout).map((m) => [m.counter, m.message]),
          [
            ["5", "Hello Curl, this is 5 time stream message."],
            ["6", "Hello Curl, this is 6 time stream message."],
          ],
        );
      });
    }
  }

  for (const reflectProtocol of ["grpc-v1", "grpc-v1alpha"]) {
    it(`should list every service through reflection (${reflectProtocol})`, async () => {
      const out = await bufCurl([
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        reflectProtocol,
        "--list-services",
        srv.url,
      ]);
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(out.stdout.trim().split("\n").sort(), [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "stream.v1.StreamService",
      ]);
    });
  }

  it("should call the health service with nothing but the URL", async () => {
    const out = await bufCurl([
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      `${srv.url}/grpc.health.v1.Health/Check`,
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(messages(out.stdout), [{ status: "SERVING" }]);
  });

  it("should report INVALID_ARGUMENT from the server as an error, not a crash", async () => {
    const out = await bufCurl([
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--data",
      JSON.stringify({ name: "x".repeat(101) }),
      `${srv.url}/stream.v1.StreamService/Stream`,
    ]);
    assert.notEqual(out.code, 0);
    assert.equal((JSON.parse(out.stderr) as { code: string }).code, "invalid_argument");
  });
});
