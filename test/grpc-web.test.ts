import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./support/browser-clients.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// Google's grpc-web runtime (the `grpc-web` npm package) in Chromium, in text
// mode (application/grpc-web-text, the only mode in which it streams from
// the server), with a method descriptor built on protobuf-es and the client
// package's resumeStream() around it: examples/grpc-web/, bundled by esbuild
// and served from an origin of its own, as a web app would be.

interface PageStream {
  page: Page;
  /** Content-Type of every request the page sent to the stream's path. */
  requestTypes: string[];
  /** HTTP status of every answer to it. */
  responseStatuses: number[];
  /** "stream status: ..." lines, in order. */
  statuses: string[];
}

describe("Google's grpc-web client in Chromium (text mode)", () => {
  let browser: Browser;
  let srv: TestServer;
  let site: http.Server;
  let origin = "";
  const pages: Page[] = [];

  before(async () => {
    const esbuild = await import("esbuild");
    const result = await esbuild.build({
      entryPoints: [new URL("../examples/grpc-web/main.ts", import.meta.url).pathname],
      bundle: true,
      write: false,
      format: "esm",
      platform: "browser",
      target: ["es2022"],
      logLevel: "silent",
    });
    const bundle = result.outputFiles[0]?.text ?? "";
    site = http.createServer((req, res) => {
      if (req.url === "/app.js") {
        res.writeHead(200, { "content-type": "text/javascript" });
        res.end(bundle);
      } else {
        res.writeHead(200, { "content-type": "text/html" });
        res.end('<!doctype html><title>grpc-web</title><script type="module" src="/app.js"></script>');
      }
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    srv = await startServer({ corsOrigins: [origin] });
    browser = await launchChromium();
  });

  after(async () => {
    for (const p of pages) await p.close();
    await browser?.close();
    await srv?.close();
    site?.closeAllConnections();
    await new Promise((resolve) => site?.close(resolve));
  });

  async function open(query: Record<string, string>): Promise<PageStream> {
    const page = await browser.newPage();
    pages.push(page);
    const stream: PageStream = { page, requestTypes: [], responseStatuses: [], statuses: [] };
    page.on("request", (r) => {
      if (r.url().endsWith("/stream.v1.StreamService/Stream") && r.method() === "POST") {
        stream.requestTypes.push(r.headers()["content-type"] ?? "");
      }
    });
    page.on("response", (r) => {
      if (r.url().endsWith("/stream.v1.StreamService/Stream") && r.request().method() === "POST") {
        stream.responseStatuses.push(r.status());
      }
    });
    page.on("console", (m) => {
      const status = /^stream status: (.*)$/.exec(m.text())?.[1];
      if (status !== undefined) stream.statuses.push(status);
    });
    await page.goto(`${origin}/?${new URLSearchParams({ server: srv.url, ...query })}`);
    return stream;
  }

  /** Resolves once `count` messages are shown; fails at once, with what the page says, when it gave up. */
  async function messages(stream: PageStream, count: number, timeout = 15_000): Promise<number[]> {
    await stream.page.waitForFunction(
      (n) => document.querySelectorAll("li").length >= n || document.querySelector("output")?.dataset.state === "error",
      count,
      { timeout },
    );
    const shown = await counters(stream.page);
    assert.ok(
      shown.length >= count,
      `the page gave up after ${shown.length} messages: ${stream.statuses.join(" | ")}; ` +
        `answers: ${stream.responseStatuses.join(", ")}`,
    );
    return shown;
  }

  it("should stream in text mode, application/grpc-web-text", async () => {
    const stream = await open({ name: "Grace", interval_ms: "50", max_attempts: "3" });
    const shown = await messages(stream, 3);
    assert.deepEqual(shown.slice(0, 3), [0, 1, 2]);
    assert.equal(await stream.page.textContent("li:first-child"), "Hello Grace, this is 0 time stream message.");
    assert.deepEqual(new Set(stream.requestTypes), new Set(["application/grpc-web-text"]));
    assert.ok(
      srv.logs.some((l) => l.msg === "stream started" && l.name === "Grace" && l.protocol === "grpc-web"),
      "the server logged a gRPC-Web stream",
    );
  });

  it("should resume with start_at after a server restart, with no gap and no duplicate", {
    timeout: 60_000,
  }, async () => {
    const stream = await open({ name: "Hopper", interval_ms: "100", max_attempts: "8" });
    await messages(stream, 3);
    const port = srv.port;
    await srv.close();
    const lastBefore = Math.max(...(await counters(stream.page)));
    srv = await startServer({ port, corsOrigins: [origin] });
    const shown = await messages(stream, lastBefore + 3, 20_000);
    assert.deepEqual(
      shown,
      shown.map((_, i) => i),
      "every counter once, in order",
    );
    assert.ok(
      stream.statuses.some((s) => s.startsWith("reconnecting")),
      `went through reconnecting: ${stream.statuses.join(" | ")}`,
    );
    await eventually(
      () => srv.logs.some((l) => l.msg === "stream started" && l.name === "Hopper"),
      5000,
      "the restarted server to serve the resumed stream",
    );
  });

  it("should end at once with the server's INVALID_ARGUMENT, read from the text-mode trailer", async () => {
    const stream = await open({ name: "x".repeat(101), max_attempts: "3" });
    await stream.page.waitForFunction(() => document.querySelector("output")?.dataset.state === "error", null, {
      timeout: 15_000,
    });
    assert.match(stream.statuses.at(-1) ?? "", /^error \[invalid_argument\] name must be at most 100 characters/);
    assert.equal(stream.statuses.filter((s) => s.startsWith("reconnecting")).length, 0, stream.statuses.join(" | "));
  });

  it("should carry the deadline as grpc-timeout and end with DEADLINE_EXCEEDED", async () => {
    const stream = await open({ name: "Deadline", interval_ms: "100", timeout_ms: "1500", max_attempts: "3" });
    await stream.page.waitForFunction(() => document.querySelector("output")?.dataset.state === "error", null, {
      timeout: 15_000,
    });
    assert.match(stream.statuses.at(-1) ?? "", /^error \[deadline_exceeded\]/, stream.statuses.join(" | "));
    // The deadline counts from the page's call, CORS preflight included, so
    // how many messages fit depends on the machine; what may not vary is that
    // every message the server sent before its deadline reached the page.
    // The browser can read the trailer before the server's log line has
    // crossed the pipe to this process.
    const isEnd = (l: (typeof srv.logs)[number]) =>
      l.msg === "stream ended" && l.name === "Deadline" && l.reason === "deadline";
    await eventually(() => srv.logs.some(isEnd), 5000, "the server to end the stream at the deadline it was sent");
    const ended = srv.logs.find(isEnd);
    const shown = await counters(stream.page);
    const sent = Number(ended?.sent);
    assert.ok(sent >= 1, `the server sent messages before the deadline: ${sent}`);
    assert.deepEqual(
      shown,
      Array.from({ length: sent }, (_, i) => i),
      `every message the server sent (${sent}) shown once, in order`,
    );
  });
});

async function counters(page: Page): Promise<number[]> {
  return page.$$eval("li", (items) => items.map((li) => Number((li as HTMLElement).dataset.counter)));
}
