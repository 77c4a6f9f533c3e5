import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { BearerTokens } from "../src/door/auth.js";
import { durationFromMs } from "../src/shared/duration.js";
import { makeCertificates, type TestCertificates } from "./support/certs.js";
import { clientCases, streamClient } from "./support/clients.js";
import { collect, grpcJsClient, grpcJsStream } from "./support/grpc-js.js";
import { grpcCall } from "./support/h2-grpc.js";
import { scrapeMetrics } from "./support/metrics-text.js";
import { startProcess, startServerProcess, stop } from "./support/process.js";
import { startServer, type TestServer } from "./support/server.js";
import { envelope } from "./support/wire.js";

// --auth-token-file: a bearer token on every road (the gRPC lean path,
// connect-node, GET /stream) and on reflection, never on health; tokens
// reread on SIGHUP; and --tls-client-ca, mTLS with certificates made here.

const run = promisify(execFile);
const GOOD = "s3cr3t-T0ken_one.~+/==";
const OTHER = "second-token";
const WRONG = "not-a-token-we-know";

function tokenDir(): { dir: string; file: string; write(text: string): void; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "stream-auth-"));
  const file = join(dir, "tokens");
  return {
    dir,
    file,
    write: (text) => writeFileSync(file, text),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("BearerTokens", () => {
  it("should accept exactly the tokens it holds, and after replace() only the new ones", () => {
    const tokens = new BearerTokens([GOOD, OTHER]);
    assert.equal(tokens.accepts(GOOD), true);
    assert.equal(tokens.accepts(OTHER), true);
    for (const near of [GOOD.slice(0, -1), `${GOOD}x`, GOOD.toUpperCase(), "", WRONG]) {
      assert.equal(tokens.accepts(near), false, near);
    }
    tokens.replace([WRONG]);
    assert.equal(tokens.accepts(GOOD), false);
    assert.equal(tokens.accepts(WRONG), true);
    assert.equal(tokens.size, 1);
  });
});

describe("--auth-token-file", () => {
  const files = tokenDir();
  let srv: TestServer;
  before(async () => {
    files.write(`# tokens for the tests\n${GOOD}\n\n  ${OTHER}  \n`);
    srv = await startServer({ authTokenFile: files.file });
  });
  after(async () => {
    await srv.close();
    files.remove();
  });

  for (const c of clientCases) {
    it(`should refuse Stream without a valid token and serve it with one (${c.name})`, async () => {
      const client = streamClient(c, srv.url);
      const attempt = async (headers: Record<string, string>) => {
        try {
          const got: bigint[] = [];
          for await (const m of client.stream({ limit: 2n, interval: durationFromMs(0) }, { headers })) {
            got.push(m.counter);
          }
          return got;
        } catch (e) {
          return ConnectError.from(e);
        }
      };
      const missing = await attempt({});
      assert.ok(missing instanceof ConnectError);
      assert.equal(missing.code, Code.Unauthenticated);
      assert.equal(missing.rawMessage, "this call needs a bearer token (an Authorization header of Bearer <token>)");
      const wrong = await attempt(bearer(WRONG));
      assert.ok(wrong instanceof ConnectError);
      assert.equal(wrong.code, Code.Unauthenticated);
      assert.equal(wrong.rawMessage, "the bearer token is not valid");
      const basic = await attempt({ authorization: "Basic dXNlcjpwYXNz" });
      assert.ok(basic instanceof ConnectError);
      assert.equal(basic.rawMessage, "the Authorization header must read Bearer <token>");
      assert.deepEqual(await attempt(bearer(GOOD)), [0n, 1n]);
      assert.deepEqual(await attempt({ authorization: `bearer  ${OTHER}` }), [0n, 1n]);
    });
  }

  for (const fastPath of [true, false]) {
    const road = fastPath ? "lean path" : "connect-node";
    it(`should answer grpc-js UNAUTHENTICATED before reading the request, with a valid token the stream (${road})`, async () => {
      const own = await startServer({ authTokenFile: files.file, fastPath });
      const client = grpcJsClient(own.port);
      try {
        const denied = await collect(grpcJsStream(client, { limit: 1n }));
        assert.equal(denied.error?.code, grpc.status.UNAUTHENTICATED);
        assert.equal(
          denied.error?.details,
          "this call needs a bearer token (an Authorization header of Bearer <token>)",
        );
        const metadata = new grpc.Metadata();
        metadata.set("authorization", `Bearer ${GOOD}`);
        const ok = await collect(grpcJsStream(client, { limit: 2n }, {}, metadata));
        assert.equal(ok.error, undefined);
        assert.equal(ok.messages.length, 2);
        // A body that is not even a message: the caller without a token learns only that it needs one.
        const garbage = await grpcCall(own.url, envelope(Buffer.from([0xff, 0xff, 0xff]), 0));
        assert.equal(garbage.trailers?.["grpc-status"] ?? garbage.headers["grpc-status"], String(Code.Unauthenticated));
        const oversize = await grpcCall(own.url, envelope(Buffer.alloc(0), 0, 1 << 20));
        assert.equal(
          oversize.trailers?.["grpc-status"] ?? oversize.headers["grpc-status"],
          String(Code.Unauthenticated),
        );
        const rejected = own.logs.filter((l) => l.msg === "stream rejected" && l.code === "unauthenticated");
        assert.equal(rejected.length, 3);
        for (const r of rejected) assert.equal(r.protocol, "grpc");
      } finally {
        client.close();
        await own.close();
      }
    });
  }

  it("should keep health open, and ask reflection for a token", async () => {
    const transport = createGrpcTransport({ baseUrl: srv.url });
    const health = await createClient(Health, transport).check({ service: "" });
    assert.equal(health.status, Status.SERVING);
    const reflection = createClient(ServerReflection, transport);
    async function* listServices() {
      yield { host: "", messageRequest: { case: "listServices" as const, value: "" } };
    }
    await assert.rejects(
      async () => {
        for await (const _ of reflection.serverReflectionInfo(listServices())) {
        }
      },
      (e) => ConnectError.from(e).code === Code.Unauthenticated,
    );
    const answers = [];
    for await (const r of reflection.serverReflectionInfo(listServices(), { headers: bearer(GOOD) })) answers.push(r);
    assert.equal(answers[0]?.messageResponse.case, "listServicesResponse");
  });

  it("should keep /healthz, /readyz and /metrics open", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      assert.equal((await fetch(`${srv.url}${path}`)).status, 200, path);
    }
  });

  describe("GET /stream", () => {
    it("should answer 401 with WWW-Authenticate, without a token or with a wrong one", async () => {
      const none = await fetch(`${srv.url}/stream?limit=1`);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="stream-service"');
      assert.deepEqual(await none.json(), {
        code: "unauthenticated",
        message: "this call needs a bearer token (an Authorization header of Bearer <token>)",
      });
      const wrong = await fetch(`${srv.url}/stream?limit=1&access_token=${WRONG}`, {
        headers: { accept: "text/event-stream" },
      });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.headers.get("www-authenticate"), 'Bearer realm="stream-service", error="invalid_token"');
      assert.deepEqual(await wrong.json(), { code: "unauthenticated", message: "the bearer token is not valid" });
    });

    it("should take the token from the Authorization header or, for EventSource, from access_token", async () => {
      const header = await fetch(`${srv.url}/stream?limit=2&interval=0s`, { headers: bearer(GOOD) });
      assert.equal(header.status, 200);
      assert.equal((await header.text()).trim().split("\n").length, 2);
      const query = await fetch(`${srv.url}/stream?limit=2&interval=0s&access_token=${encodeURIComponent(GOOD)}`, {
        headers: { accept: "text/event-stream" },
      });
      assert.equal(query.status, 200);
      // RFC 6750 section 2.3: an answer to a URL with a token stays out of shared caches.
      assert.equal(query.headers.get("cache-control"), "private, no-cache");
      assert.deepEqual(
        [...(await query.text()).matchAll(/^id: (\d+)$/gm)].map((m) => m[1]),
        ["0", "1"],
      );
    });

    it("should refuse a token sent both ways, and a query token given twice", async () => {
      const both = await fetch(`${srv.url}/stream?limit=1&access_token=${OTHER}`, { headers: bearer(GOOD) });
      assert.equal(both.status, 400);
      assert.equal(both.headers.get("www-authenticate"), 'Bearer realm="stream-service", error="invalid_request"');
      const twice = await fetch(
        `${srv.url}/stream?limit=1&access_token=${encodeURIComponent(GOOD)}&access_token=${encodeURIComponent(GOOD)}`,
      );
      assert.equal(twice.status, 400);
      assert.deepEqual(await twice.json(), {
        code: "invalid_argument",
        message: "access_token is given more than once",
      });
    });
  });

  it("should write no token to a log line, a metric or an error, and log each refusal", async () => {
    const metrics = await scrapeMetrics(srv.url);
    const logs = JSON.stringify(srv.logs);
    for (const token of [GOOD, OTHER, WRONG, encodeURIComponent(GOOD), "dXNlcjpwYXNz"]) {
      assert.ok(!logs.includes(token), `a log line holds ${token}`);
      assert.ok(!metrics.includes(token), `a metric holds ${token}`);
    }
    const refusals = srv.logs.filter((l) => l.msg === "stream rejected" && l.code === "unauthenticated");
    assert.deepEqual(
      new Set(refusals.map((l) => l.protocol)),
      new Set(["grpc", "grpc-web", "connect", "ndjson", "sse"]),
    );
    assert.match(metrics, /^request_errors_total\{code="unauthenticated"\} \d+$/m);
  });
});

describe("--auth-metrics on", () => {
  const files = tokenDir();
  let srv: TestServer;
  before(async () => {
    files.write(`${GOOD}\n`);
    srv = await startServer({ authTokenFile: files.file, authMetrics: true });
  });
  after(async () => {
    await srv.close();
    files.remove();
  });

  it("should ask /metrics for a token and leave the probes open", async () => {
    const denied = await fetch(`${srv.url}/metrics`);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get("www-authenticate"), 'Bearer realm="stream-service"');
    await denied.arrayBuffer();
    const ok = await fetch(`${srv.url}/metrics`, { headers: bearer(GOOD) });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /streams_live/);
    for (const path of ["/healthz", "/readyz"]) assert.equal((await fetch(`${srv.url}${path}`)).status, 200, path);
  });
});

describe("the token file as a process reads it", () => {
  const files = tokenDir();
  after(() => files.remove());

  it("should reread it on SIGHUP, and keep the old tokens when the new file is unusable", async () => {
    files.write(`${GOOD}\n`);
    const srv = await startServerProcess(["--auth-token-file", files.file]);
    try {
      const status = async (token: string) =>
        (await fetch(`${srv.url}/stream?limit=1`, { headers: bearer(token) }).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        })) as number;
      assert.equal(await status(GOOD), 200);
      assert.equal(await status(OTHER), 401);

      files.write(`${OTHER}\n`);
      srv.child.kill("SIGHUP");
      await srv.waitForLine((l) => l.includes('"auth tokens reloaded"') && l.includes('"tokens":1'));
      assert.equal(await status(GOOD), 401);
      assert.equal(await status(OTHER), 200);

      files.write("# nothing left\n");
      srv.child.kill("SIGHUP");
      await srv.waitForLine((l) => l.includes('"auth tokens not reloaded, the old ones stay"'));
      const warning = JSON.parse(srv.lines.find((l) => l.includes("not reloaded")) as string);
      assert.equal(warning.level, "warn");
      assert.equal(warning.error, `--auth-token-file: ${files.file} holds no token`);
      assert.equal(await status(OTHER), 200, "the old tokens stay");
      assert.equal(srv.child.exitCode, null, "SIGHUP does not end the server");
    } finally {
      assert.equal(await stop(srv), 0);
    }
  });

  for (const [what, content, message] of [
    ["a missing file", undefined, "cannot read FILE (ENOENT)"],
    ["a file with no token", "# only a comment\n\n", "FILE holds no token"],
    ["a line that is not a token", `${GOOD}\nhas a space\n`, "line 2 of FILE is not a bearer token"],
  ] as const) {
    it(`should stop at start with exit status 2 on ${what}`, async () => {
      const file = content === undefined ? join(files.dir, "missing") : join(files.dir, "bad");
      if (content !== undefined) writeFileSync(file, content);
      const proc = startProcess("src/main.ts", ["--port", "0", "--auth-token-file", file]);
      assert.equal(await proc.exited, 2);
      assert.ok(
        proc.stderr().startsWith(`configuration error: --auth-token-file: ${message.replace("FILE", file)}`),
        proc.stderr(),
      );
      assert.ok(!proc.stderr().includes("has a space"), "the line's text is not shown");
      assert.equal(proc.lines.filter((l) => l.includes("listening on")).length, 0);
    });
  }
});

describe("--tls-client-ca (mTLS)", () => {
  let certs: TestCertificates;
  let srv: TestServer;
  let url: string;
  before(async () => {
    certs = makeCertificates();
    srv = await startServer({ tlsCert: certs.serverCert, tlsKey: certs.serverKey, tlsClientCa: certs.clientCa });
    url = `https://127.0.0.1:${srv.port}`;
  });
  after(async () => {
    await srv.close();
    certs.remove();
  });

  const grpcJs = (cert?: string, key?: string) =>
    grpcJsClient(
      srv.port,
      grpc.credentials.createSsl(
        certs.read(certs.serverCert),
        key === undefined ? null : certs.read(key),
        cert === undefined ? null : certs.read(cert),
      ),
    );

  it("should serve grpc-js with a certificate the CA signed", async () => {
    const client = grpcJs(certs.clientCert, certs.clientKey);
    try {
      const { messages, error } = await collect(grpcJsStream(client, { name: "mTLS", limit: 2n }));
      assert.equal(error, undefined);
      assert.deepEqual(
        messages.map((m) => m.message),
        ["Hello mTLS, this is 0 time stream message.", "Hello mTLS, this is 1 time stream message."],
      );
    } finally {
      client.close();
    }
  });

  for (const [what, cert, key] of [
    ["no certificate", undefined, undefined],
    ["a certificate another CA signed", "strangerCert", "strangerKey"],
  ] as const) {
    it(`should refuse grpc-js with ${what}`, async () => {
      const client = grpcJs(cert && certs[cert], key && certs[key]);
      try {
        const { messages, error } = await collect(
          grpcJsStream(client, { limit: 1n }, { deadline: Date.now() + 10_000 }),
        );
        assert.equal(messages.length, 0);
        assert.equal(error?.code, grpc.status.UNAVAILABLE, error?.message);
      } finally {
        client.close();
      }
    });
  }

  it("should serve curl with the client certificate, over HTTP/1.1 and HTTP/2, and refuse it without", async () => {
    const curl = (...args: string[]) =>
      run("curl", ["-sS", "--cacert", certs.serverCert, ...args], { timeout: 20_000 }).then(
        ({ stdout }) => ({ ok: true, stdout, stderr: "" }),
        (e: { stdout?: string; stderr?: string }) => ({ ok: false, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
      );
    const withCert = ["--cert", certs.clientCert, "--key", certs.clientKey];
    for (const version of ["--http1.1", "--http2"]) {
      const ok = await curl(version, ...withCert, `${url}/stream?name=curl&limit=1`);
      assert.ok(ok.ok, ok.stderr);
      assert.match(ok.stdout, /Hello curl, this is 0 time stream message\./);
    }
    const without = await curl(`${url}/healthz`);
    assert.equal(without.ok, false, "no certificate: the handshake fails, health included");
    const stranger = await curl("--cert", certs.strangerCert, "--key", certs.strangerKey, `${url}/healthz`);
    assert.equal(stranger.ok, false, stranger.stdout);
    assert.doesNotMatch(stranger.stdout, /ok/, "no answer reached a stranger");
    // With TLS 1.3 the client finishes its side of the handshake before the server has checked its
    // certificate: curl then reports the refusal as an alert, or as the connection cut under it
    // (reset, or gone before curl asks who its peer is: ENOTCONN).
    assert.match(stranger.stderr, /alert|certificate|SSL|reset|not closed cleanly|connection|not connected/i);
  });

  it("should answer no request of an HTTP/2 client without a certificate", { timeout: 20_000 }, async () => {
    const session = http2.connect(url, { ca: certs.read(certs.serverCert) });
    session.on("error", () => {});
    const req = session.request({ ":path": "/healthz" });
    const outcome = await new Promise<string>((resolve) => {
      req.on("response", (headers) => resolve(`answered ${headers[":status"]}`));
      req.on("error", (e: Error) => resolve(e.message));
      req.on("close", () => resolve("closed"));
    });
    assert.doesNotMatch(outcome, /^answered/);
    session.destroy();
  });
});
