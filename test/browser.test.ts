import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { buildWeb } from "../web/build.js";
import { launchChromium } from "./support/browser-clients.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// The page and EventSource in a real browser: Debian's chromium, installed by
// scripts/setup.sh, driven by playwright-core. Every wait is on a condition
// with a timeout, so a failure names what never happened.

describe("the web page in headless Chromium", () => {
  let browser: Browser;
  let srv: TestServer;
  let otherOrigin: http.Server;
  let otherOriginUrl: string;

  before(async () => {
    // Always rebuild, so the test never runs a stale bundle (esbuild takes a fraction of a second).
    await buildWeb();
    // A second origin (another port) whose page opens an EventSource on the server.
    otherOrigin = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>another origin</title>");
    });
    await new Promise<void>((resolve) => otherOrigin.listen(0, "127.0.0.1", resolve));
    otherOriginUrl = `http://127.0.0.1:${(otherOrigin.address() as AddressInfo).port}`;
    srv = await startServer({ corsOrigins: [otherOriginUrl] });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await srv?.close();
    otherOrigin?.closeAllConnections();
    await new Promise((resolve) => otherOrigin?.close(resolve));
  });

  it("should stream live, resume at the next counter after a server restart, and stop", {
    timeout: 60_000,
  }, async () => {
    const page = await browser.newPage();
    const statuses: string[] = [];
    page.on("console", (m) => {
      const state = /^stream status: (\w+)$/.exec(m.text())?.[1];
      if (state !== undefined) statuses.push(state);
    });
    try {
      await page.goto(srv.url);
      await page.fill("#name", "Ada");
      await page.fill("#interval", "0.2");
      await page.click("#start");
      await page.waitForFunction(() => document.querySelectorAll("#messages li").length >= 3, null, {
        timeout: 10_000,
      });
      assert.deepEqual((await counters(page)).slice(0, 3), [0, 1, 2]);
      assert.equal(await page.getAttribute("#status", "data-state"), "streaming");
      assert.match((await page.textContent("#messages li")) ?? "", /#0.*Hello Ada, this is 0 time stream message\./);

      const port = srv.port;
      await srv.close();
      // Nothing can arrive while no server listens: this is the last counter of the first server.
      const lastBefore = Math.max(...(await counters(page)));
      srv = await startServer({ port, corsOrigins: [otherOriginUrl] });
      await page.waitForFunction(
        (want) => [...document.querySelectorAll<HTMLElement>("#messages li")].some((li) => li.dataset.counter === want),
        String(lastBefore + 2),
        { timeout: 15_000 },
      );
      const shown = await counters(page);
      assert.deepEqual(
        shown,
        shown.map((_, i) => i),
        "counters go on with no gap and no duplicate",
      );
      assert.ok(statuses.includes("reconnecting"), `status went through reconnecting: ${statuses.join(", ")}`);
      assert.ok(
        srv.logs.some((l) => l.msg === "stream started" && l.protocol === "connect" && l.name === "Ada"),
        "the restarted server serves the resumed stream",
      );

      await page.click("#stop");
      await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "stopped", null, {
        timeout: 5000,
      });
      const streams = srv.server.streams;
      await eventually(() => streams.liveCount === 0, 5000, "the live stream count to fall to 0");
      await eventually(() => streams.pacer.pending === 0, 5000, "no pending waits");
      // The restarted server began at lastBefore + 1: it sent no message the page had already (at most
      // one more than shown, in flight when Stop was pressed).
      const shownAfterRestart = Math.max(...(await counters(page))) - lastBefore;
      assert.ok(
        streams.messagesSent >= shownAfterRestart && streams.messagesSent <= shownAfterRestart + 1,
        `restarted server sent ${streams.messagesSent}, page shows ${shownAfterRestart} after the restart`,
      );
    } finally {
      await page.close();
    }
  });

  it("should deliver EventSource events with ids to a page of another allowed origin, then close", {
    timeout: 30_000,
  }, async () => {
    const page = await browser.newPage();
    try {
      await page.goto(otherOriginUrl);
      const events = await page.evaluate(
        (url) =>
          new Promise<Array<{ id: string; data: string }>>((resolve, reject) => {
            const source = new EventSource(url);
            const got: Array<{ id: string; data: string }> = [];
            source.onmessage = (e) => {
              got.push({ id: e.lastEventId, data: e.data });
            };
            // After the last event the stream ends and EventSource reconnects with Last-Event-ID;
            // the server's 204 then closes it for good. Closed with fewer events means refused (CORS?).
            source.onerror = () => {
              if (source.readyState !== EventSource.CLOSED) return;
              if (got.length === 3) resolve(got);
              else reject(new Error(`EventSource closed after ${got.length} events (CORS refused?)`));
            };
          }),
        `${srv.url}/stream?name=Eve&interval=0.05s&limit=3&start_at=5`,
      );
      assert.deepEqual(
        events.map((e) => [e.id, JSON.parse(e.data).message]),
        [
          ["5", "Hello Eve, this is 5 time stream message."],
          ["6", "Hello Eve, this is 6 time stream message."],
          ["7", "Hello Eve, this is 7 time stream message."],
        ],
      );
      await eventually(() => srv.server.streams.liveCount === 0, 5000, "the SSE stream to end");
      const opened = srv.logs.filter((l) => l.msg === "stream started" && l.name === "Eve");
      assert.equal(opened.length, 1, "the reconnect after the last event starts no stream");
      assert.equal(opened[0]?.protocol, "sse");
    } finally {
      await page.close();
    }
  });

  it("should carry EventSource on with no gap across cuts by --max-stream-duration", { timeout: 60_000 }, async () => {
    const cutting = await startServer({ maxStreamDurationMs: 600, corsOrigins: [otherOriginUrl] });
    const page = await browser.newPage();
    try {
      await page.goto(otherOriginUrl);
      const seen = await page.evaluate(
        (url) =>
          new Promise<{ ids: string[]; errors: string[] }>((resolve, reject) => {
            const source = new EventSource(url);
            const ids: string[] = [];
            const errors: string[] = [];
            source.onmessage = (e) => ids.push(e.lastEventId);
            // The server's "error" event (a MessageEvent with data) before each cut; the browser's own
            // error events (no data) when the response ends, after which EventSource reconnects.
            source.addEventListener("error", (e) => {
              if (e instanceof MessageEvent) errors.push(e.data);
              else if (source.readyState === EventSource.CLOSED) {
                if (ids.length === 12) resolve({ ids, errors });
                else reject(new Error(`EventSource closed after ${ids.length} events`));
              }
            });
          }),
        `${cutting.url}/stream?name=Cut&interval=0.1s&limit=12`,
      );
      assert.deepEqual(
        seen.ids,
        Array.from({ length: 12 }, (_, i) => String(i)),
        "every counter once, in order",
      );
      assert.ok(seen.errors.length >= 1, "cut at least once");
      for (const data of seen.errors) {
        assert.equal(JSON.parse(data).code, "unavailable");
        assert.match(JSON.parse(data).message, /^stream reached the server's maximum duration of 600ms/);
      }
      const ends = cutting.logs.filter((l) => l.msg === "stream ended" && l.name === "Cut").map((l) => l.reason);
      assert.deepEqual(ends, [...seen.errors.map(() => "max_duration"), "limit"]);
    } finally {
      await page.close();
      await cutting.close();
    }
  });
});

async function counters(page: Page): Promise<number[]> {
  return page.$$eval("#messages li", (items) => items.map((li) => Number((li as HTMLElement).dataset.counter)));
}
