import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium } from "./support/browser-clients.js";
import {
  aliased,
  installConsumer,
  type PackedTarball,
  packageDir,
  packClient,
  pinned,
  tsBlocks,
  tsc,
} from "./support/client-package.js";
import { type Proc, startCommand, stop } from "./support/process.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// The client package from outside the repository, as a user gets it: packed,
// installed offline with its peers into a project of its own in the system's
// temporary directory, type-checked by tsc, then run. In Node (plain node,
// no tsx) over Connect, gRPC and gRPC-Web, and in Chromium from an esbuild
// bundle of the README's browser example, each through a server restart on
// the same port. Two sets of peers, the two ends of the ranges it declares:
// the versions the repository pins, and @bufbuild/protobuf 2.17.0, which
// npm picks beside Connect 2.1.2 on Node 20 when left to itself.

const readme = tsBlocks(`${packageDir}/README.md`);
const [readmeNode = "", readmeBrowser = ""] = readme;

const consumerTsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2022", "DOM"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUnusedLocals: true,
    verbatimModuleSyntax: true,
    // The package's own .d.ts are checked too, not only used.
    skipLibCheck: false,
    outDir: "out",
  },
  include: ["*.ts"],
};

const peers = ["@connectrpc/connect", "@connectrpc/connect-node", "@connectrpc/connect-web", "@bufbuild/protobuf"];

interface PeerSet {
  name: string;
  versions: Record<string, string>;
}

const peerSets: PeerSet[] = [
  { name: "the pinned versions", versions: Object.fromEntries(peers.map((p) => [p, pinned(p)])) },
  {
    name: "npm's pick on Node 20",
    versions: {
      ...Object.fromEntries(peers.map((p) => [p, pinned(p)])),
      "@bufbuild/protobuf": aliased("protobuf-newest"),
    },
  },
];

describe("the client package, installed outside the repository", () => {
  let dir = "";
  let tarball: PackedTarball;
  /** One consumer project per peer set, in order; the first is also the browser's. */
  const consumers: string[] = [];
  let consumer = "";

  before(async () => {
    dir = await mkdtemp(`${tmpdir()}/stream-client-consumer-`);
    tarball = await packClient(dir);
    for (const [i, set] of peerSets.entries()) {
      const project = `${dir}/consumer-${i}`;
      await mkdir(project);
      await copyFile(tarball.path, `${project}/${tarball.filename}`);
      await installConsumer(project, tarball, {
        dependencies: set.versions,
        devDependencies: { "@types/node": pinned("@types/node") },
      });
      await copyFile(new URL("client-package/node-consumer.ts", import.meta.url), `${project}/node-consumer.ts`);
      await writeFile(`${project}/readme-node.ts`, readmeNode);
      await writeFile(`${project}/readme-browser.ts`, readmeBrowser);
      await writeFile(`${project}/tsconfig.json`, JSON.stringify(consumerTsconfig, null, 2));
      consumers.push(project);
    }
    consumer = consumers[0] as string;
  });

  // tsc once per project, for the test that checks it and the tests that run its output.
  const compiled = new Map<number, Promise<void>>();
  const compile = (i: number): Promise<void> => {
    if (!compiled.has(i)) compiled.set(i, tsc(`${consumers[i]}/tsconfig.json`));
    return compiled.get(i) as Promise<void>;
  };

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("should pack ESM with declarations and the proto, and nothing of src/", () => {
    assert.equal(tarball.manifest.name, "@stream-service/client");
    assert.equal(tarball.manifest.type, "module");
    for (const f of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/node.js",
      "dist/node.d.ts",
      "proto/stream/v1/stream.proto",
    ]) {
      assert.ok(tarball.files.includes(f), `${f} packed: ${tarball.files.join(", ")}`);
    }
    assert.deepEqual(
      tarball.files.filter((f) => f.startsWith("src/") || f.endsWith(".ts") !== f.endsWith(".d.ts")),
      [],
    );
    const installed = `${consumer}/node_modules/@stream-service/client`;
    assert.equal(
      readFileSync(`${installed}/proto/stream/v1/stream.proto`, "utf8"),
      readFileSync(new URL("../proto/stream/v1/stream.proto", import.meta.url), "utf8"),
      "the proto it was generated from",
    );
  });

  it("should be versioned with the proto: the major version is stream.v1's", () => {
    const proto = readFileSync(new URL("../proto/stream/v1/stream.proto", import.meta.url), "utf8");
    const protoVersion = /^package stream\.v(\d+);$/m.exec(proto)?.[1];
    assert.equal(tarball.manifest.version.split(".")[0], protoVersion);
  });

  it("should declare its peers with ranges that start at the pinned versions and hold both sets, and Node 20", () => {
    const declared = tarball.manifest.peerDependencies as Record<string, string>;
    assert.deepEqual(Object.keys(declared).sort(), [...peers].sort());
    for (const name of peers) {
      assert.equal(declared[name], `^${pinned(name)}`, `${name}: the range starts at the tested version`);
      for (const [i, set] of peerSets.entries()) {
        const installed = JSON.parse(readFileSync(`${consumers[i]}/node_modules/${name}/package.json`, "utf8"));
        assert.equal(installed.version, set.versions[name], `${set.name}: ${name}`);
        assert.ok(caretHolds(pinned(name), installed.version), `^${pinned(name)} holds ${installed.version}`);
      }
    }
    assert.deepEqual(tarball.manifest.engines, { node: ">=20" });
  });

  for (const [i, set] of peerSets.entries()) {
    it(`should type-check its consumers with tsc, strict, against the installed declarations (${set.name})`, async () => {
      await compile(i);
      assert.ok(existsSync(`${consumers[i]}/out/node-consumer.js`));
    });
  }

  describe("in Node", () => {
    let srv: TestServer;
    const procs: Proc[] = [];
    before(async () => {
      srv = await startServer();
    });
    after(async () => {
      for (const p of procs) await stop(p, "SIGKILL");
      await srv?.close();
    });

    for (const [i, set] of peerSets.entries()) {
      it(`should stream over Connect, gRPC and gRPC-Web through a server restart with no gap and no duplicate (${set.name})`, async () => {
        await compile(i);
        const limit = 12;
        // Plain node, from the consumer's directory: no tsx, nothing of the repository on the way.
        const child = startCommand(process.execPath, ["out/node-consumer.js", srv.url, String(limit), `set${i}`], {
          cwd: consumers[i] as string,
          env: { NODE_OPTIONS: undefined },
        });
        procs.push(child);
        const counters = (protocol: string) =>
          child.lines.filter((l) => new RegExp(`^${protocol} \\d+$`).test(l)).map((l) => Number(l.split(" ")[1]));
        const protocols = ["connect", "grpc", "grpcweb"];
        await child.waitUntil(() => protocols.every((p) => counters(p).length >= 3));
        const port = srv.port;
        await srv.close();
        srv = await startServer({ port });
        assert.equal(await child.exited, 0, child.stderr());
        for (const protocol of protocols) {
          assert.deepEqual(counters(protocol), [...Array(limit).keys()], `${protocol}: every counter once, in order`);
          assert.ok(child.lines.includes(`${protocol} reconnecting`), `${protocol} reconnected`);
          assert.equal(child.lines.filter((l) => l.startsWith(`${protocol} `)).at(-1), `${protocol} done`);
        }
        const resumed = srv.logs
          .filter((l) => l.msg === "stream started" && String(l.name).startsWith(`set${i} `))
          .map((l) => l.protocol);
        assert.deepEqual(resumed.sort(), ["connect", "grpc", "grpc-web"], "each protocol resumed on the new server");
      });
    }

    it("should run the README's Node example as written", async () => {
      await compile(0);
      const source = await readFile(`${consumer}/out/readme-node.js`, "utf8");
      await writeFile(`${consumer}/out/readme-node.js`, source.replace("localhost:8080", `127.0.0.1:${srv.port}`));
      const child = startCommand(process.execPath, ["out/readme-node.js"], {
        cwd: consumer,
        env: { NODE_OPTIONS: undefined },
      });
      procs.push(child);
      assert.equal(await child.exited, 0, child.stderr());
      assert.deepEqual(
        child.lines,
        [...Array(10).keys()].map((n) => `${n}: Hello Ada, this is ${n} time stream message.`),
      );
    });
  });

  describe("in Chromium, bundled by esbuild", () => {
    let browser: Browser;
    let srv: TestServer;
    let site: http.Server;
    let origin = "";
    let bundle = "";

    before(async () => {
      const esbuild = await import("esbuild");
      const source = readmeBrowser.replace("localhost:8080", "127.0.0.1:PORT");
      await writeFile(`${consumer}/browser-entry.ts`, source);
      const result = await esbuild.build({
        absWorkingDir: consumer,
        entryPoints: ["browser-entry.ts"],
        bundle: true,
        write: false,
        format: "esm",
        platform: "browser",
        target: ["es2022"],
        metafile: true,
        logLevel: "silent",
      });
      const inputs = Object.keys(result.metafile.inputs);
      assert.ok(
        inputs.some((i) => i.startsWith("node_modules/@stream-service/client/dist/")),
        `bundled the installed package: ${inputs.join(", ")}`,
      );
      assert.deepEqual(
        inputs.filter((i) => i.includes("connect-node") || i.startsWith("node:")),
        [],
        "no Node-only module in the browser bundle",
      );
      bundle = result.outputFiles[0]?.text ?? "";
      // The page comes from an origin of its own, as a web app's would.
      site = http.createServer((req, res) => {
        if (req.url === "/app.js") {
          res.writeHead(200, { "content-type": "text/javascript" });
          res.end(bundle);
        } else {
          res.writeHead(200, { "content-type": "text/html" });
          res.end('<!doctype html><title>consumer</title><script type="module" src="/app.js"></script>');
        }
      });
      await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
      origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
      srv = await startServer({ corsOrigins: [origin] });
      bundle = bundle.replace("127.0.0.1:PORT", `127.0.0.1:${srv.port}`);
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      await srv?.close();
      site?.closeAllConnections();
      await new Promise((resolve) => site?.close(resolve));
    });

    it("should refuse to bundle the ./node entry for a browser", async () => {
      const esbuild = await import("esbuild");
      await writeFile(`${consumer}/browser-wrong.ts`, 'export * from "@stream-service/client/node";\n');
      await assert.rejects(
        esbuild.build({
          absWorkingDir: consumer,
          entryPoints: ["browser-wrong.ts"],
          bundle: true,
          write: false,
          platform: "browser",
          logLevel: "silent",
        }),
        (e: { errors?: Array<{ notes: Array<{ text: string }> }> }) => {
          const notes = (e.errors ?? []).flatMap((m) => m.notes.map((n) => n.text)).join("\n");
          // Only "node" leads to JavaScript there ("types" is for tsc alone), and a browser build has no "node".
          assert.match(notes, /None of the conditions in the package definition \("types", "node"\) match/);
          return true;
        },
      );
    });

    it("should stream the README's browser example and go on after a server restart with no gap", {
      timeout: 60_000,
    }, async () => {
      const page = await browser.newPage();
      const states: string[] = [];
      page.on("console", (m) => {
        const state = /^stream (\w+)$/.exec(m.text())?.[1];
        if (state !== undefined) states.push(state);
      });
      const counters = () => page.$$eval("li", (items) => items.map((li) => Number(li.textContent?.split(":")[0])));
      try {
        await page.goto(origin);
        await page.waitForFunction(() => document.querySelectorAll("li").length >= 3, null, { timeout: 15_000 });
        assert.match((await page.textContent("li")) ?? "", /^0: Hello Ada, this is 0 time stream message\.$/);
        const port = srv.port;
        await srv.close();
        const lastBefore = Math.max(...(await counters()));
        srv = await startServer({ port, corsOrigins: [origin] });
        await page.waitForFunction((want) => document.querySelectorAll("li").length > want, lastBefore + 2, {
          timeout: 20_000,
        });
        const shown = await counters();
        assert.deepEqual(
          shown,
          shown.map((_, i) => i),
          "every counter once, in order",
        );
        assert.ok(states.includes("reconnecting"), `went through reconnecting: ${states.join(", ")}`);
        await eventually(
          () => srv.logs.some((l) => l.msg === "stream started" && l.protocol === "connect" && l.name === "Ada"),
          5000,
          "the restarted server to serve the resumed stream",
        );
      } finally {
        await page.close();
      }
      await eventually(() => srv.server.streams.liveCount === 0, 5000, "the stream to end with the page");
    });
  });
});

/** Whether ^`lowest` holds `version`: the same major, and not below. */
function caretHolds(lowest: string, version: string): boolean {
  const [a, b] = [lowest, version].map((v) => v.split(".").map(Number)) as [number[], number[]];
  if (a[0] !== b[0]) return false;
  for (let i = 1; i < 3; i++) if ((b[i] ?? 0) !== (a[i] ?? 0)) return (b[i] ?? 0) > (a[i] ?? 0);
  return true;
}
