import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { collect, grpcJsClient, grpcJsStream } from "./support/grpc-js.js";
import { listening, type ServerProc, startCommand, stop } from "./support/process.js";

// The production layout, built with the Dockerfile's steps (CI cannot build
// the image itself): the build context that .dockerignore lets through, `npm
// run build` there, then a directory holding only package.json,
// package-lock.json and dist/, `npm ci --omit=dev` in it, and `node
// dist/main.js`. Nothing else of the repository reaches it, so a runtime need
// of src/, web/ or a dev tool fails here as it would in the image.

const root = new URL("..", import.meta.url).pathname;
const run = promisify(execFile);

/** The paths .dockerignore lets into the build context: it ignores everything ("*") but its "!" lines. */
async function dockerContextPaths(): Promise<string[]> {
  const rules = (await readFile(`${root}.dockerignore`, "utf8"))
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  assert.equal(rules[0], "*", ".dockerignore starts by ignoring everything");
  const kept = rules.slice(1);
  assert.ok(
    kept.every((l) => l.startsWith("!")),
    "after *, .dockerignore only lets paths back in",
  );
  return kept.map((l) => l.slice(1));
}

describe("production layout (Dockerfile steps: npm run build, npm ci --omit=dev, node dist/main.js)", () => {
  let dir = "";
  let app = "";
  let server: ServerProc | undefined;

  before(async () => {
    dir = await mkdtemp(`${tmpdir()}/stream-service-prod-`);
    // Build stage. node_modules is linked, not installed again: it is what `npm ci` made from the same lockfile.
    const context = `${dir}/context`;
    for (const path of await dockerContextPaths()) {
      await cp(`${root}${path}`, `${context}/${path}`, { recursive: true });
    }
    await symlink(`${root}node_modules`, `${context}/node_modules`, "dir");
    await run("npm", ["run", "build"], { cwd: context, timeout: 180_000 });
    // Runtime stage.
    app = `${dir}/app`;
    await mkdir(app);
    for (const f of ["package.json", "package-lock.json"]) await copyFile(`${context}/${f}`, `${app}/${f}`);
    // --prefer-offline: the packages come from the npm cache that the earlier `npm ci` filled;
    // only a package missing from it goes to the registry.
    await run("npm", ["ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: app,
      timeout: 180_000,
    });
    await cp(`${context}/dist`, `${app}/dist`, { recursive: true });
  });

  after(async () => {
    if (server) await stop(server, "SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("should install the production dependencies only, with no compiler, tsx or bundler", async () => {
    assert.deepEqual((await readdir(app)).sort(), ["dist", "node_modules", "package-lock.json", "package.json"]);
    for (const dep of ["@connectrpc/connect-node", "@bufbuild/protobuf", "prom-client"]) {
      assert.ok(existsSync(`${app}/node_modules/${dep}/package.json`), `${dep} installed`);
    }
    for (const dev of ["tsx", "typescript", "esbuild", "@connectrpc/connect-web", "@grpc/grpc-js"]) {
      assert.ok(!existsSync(`${app}/node_modules/${dev}`), `${dev} not installed`);
    }
  });

  it("should stream over gRPC and Connect, and serve the web page, from node dist/main.js", async () => {
    server = await startProduction(app);
    const grpc = grpcJsClient(server.port);
    try {
      const { messages, error } = await collect(
        grpcJsStream(grpc, { name: "prod grpc", limit: 3n, interval: durationFromMs(0) }),
      );
      assert.equal(error, undefined);
      assert.deepEqual(
        messages.map((m) => m.counter),
        [0n, 1n, 2n],
      );
    } finally {
      grpc.close();
    }
    const connect = createClient(StreamService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const texts: string[] = [];
    for await (const m of connect.stream({ name: "prod connect", limit: 3n, interval: durationFromMs(0) })) {
      texts.push(m.message);
    }
    assert.deepEqual(
      texts,
      [0, 1, 2].map((n) => `Hello prod connect, this is ${n} time stream message.`),
    );
    for (const [path, type] of [
      ["/", "text/html; charset=utf-8"],
      ["/app.js", "text/javascript; charset=utf-8"],
    ] as const) {
      const res: Response = await fetch(`${server.url}${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), type, path);
      assert.ok((await res.arrayBuffer()).byteLength > 100, `${path} has a body`);
    }
  });

  it("should drain open streams on SIGTERM to its own PID, exit 0, and leave nothing on the port", async () => {
    server ??= await startProduction(app);
    const srv = server;
    const grpc = grpcJsClient(srv.port);
    const grpcStream = grpcJsStream(grpc, { name: "prod endless grpc", interval: durationFromMs(100) });
    const grpcFirst = once(grpcStream, "data");
    const grpcCall = collect(grpcStream);
    const connect = createClient(StreamService, createConnectTransport({ baseUrl: srv.url, httpVersion: "1.1" }));
    let connectFirst: () => void = () => {};
    const connectFirstSeen = new Promise<void>((resolve) => {
      connectFirst = resolve;
    });
    const connectCall = (async () => {
      let received = 0;
      try {
        for await (const _ of connect.stream({ name: "prod endless connect", interval: durationFromMs(100) })) {
          received++;
          connectFirst();
        }
        return { received, error: undefined };
      } catch (e) {
        return { received, error: ConnectError.from(e) };
      } finally {
        connectFirst();
      }
    })();
    await Promise.all([grpcFirst, connectFirstSeen]);

    assert.ok(srv.child.pid !== undefined);
    process.kill(srv.child.pid, "SIGTERM");
    assert.equal(await srv.exited, 0);

    const g = await grpcCall;
    grpc.close();
    assert.ok(g.messages.length >= 1);
    assert.equal(g.error?.details, "server is shutting down");
    const c = await connectCall;
    assert.ok(c.received >= 1);
    assert.equal(c.error?.code, Code.Unavailable);
    assert.ok(srv.lines.some((l) => l.includes('"shut down"') && l.includes('"clean":true')));
    assert.deepEqual(await processesIn(app), [], "no process left running in the production directory");
    await assertPortFree(srv.port);
  });
});

function startProduction(dir: string): Promise<ServerProc> {
  // No NODE_OPTIONS: the test runner's `--import tsx` must not reach the production process.
  const proc = startCommand(process.execPath, ["dist/main.js", "--host", "127.0.0.1", "--port", "0"], {
    cwd: dir,
    env: { LOG_FORMAT: "json", NODE_OPTIONS: undefined },
  });
  return listening(proc);
}

/** PIDs of processes whose working directory is `dir` (Linux /proc). */
async function processesIn(dir: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => "");
    if (cwd === dir || cwd.startsWith(`${dir}/`)) found.push(Number(entry));
  }
  return found;
}

/** Binding the port again succeeds only when no socket of the old process still listens on it. */
async function assertPortFree(port: number): Promise<void> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(port, "127.0.0.1", resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
