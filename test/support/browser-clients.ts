import { existsSync } from "node:fs";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { newTrace, recordBreak, recordMessage, type Trace } from "./traces.js";

// Resuming clients in Chromium: the web page itself (its own resume logic
// over Connect, fetch), and the browser's EventSource (Last-Event-ID, its own
// reconnection delay). Each runs in a browser context of its own, because
// Chromium allows 6 HTTP/1.1 connections per host in a context and every open
// stream holds one. What the page shows and what EventSource delivers is
// recorded inside the page as it happens, with Date.now() times, and turned
// into the same Trace as the Node clients'.

export const chromiumPath = "/usr/bin/chromium";
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
  // Many pages stream at once; none of them may be throttled as a background tab.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
];

export function launchChromium(): Promise<Browser> {
  if (!existsSync(chromiumPath)) throw new Error(`no browser at ${chromiumPath}: run scripts/setup.sh`);
  return chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: 30_000 });
}

/** What the page recorded, in order. */
type PageEvent =
  | { t: "msg"; counter: number; at: number }
  | { t: "status"; state: string; text: string; at: number }
  | { t: "error-event"; code: string; message: string; at: number }
  | { t: "conn-error"; closed: boolean; at: number };

export interface BrowserClient {
  /** Rebuilt from what the page recorded so far by refresh(). */
  trace: Trace;
  /** Reads what the page recorded since and rebuilds `trace`. */
  refresh(): Promise<Trace>;
  /** Stops the stream (the page's Stop button; EventSource.close()), refreshes, and closes the context. */
  stop(): Promise<Trace>;
}

// Runs in every page before its own script: record every message the web page
// shows (an <li data-counter>, even one that MAX_SHOWN later removes) and
// every status; EventSource clients add their events to the same record.
function recordPage(): void {
  const w = window as unknown as { __fleet: PageEvent[] };
  w.__fleet = [];
  const info = console.info.bind(console);
  console.info = (...args: unknown[]) => {
    const state = /^stream status: (\w+)$/.exec(String(args[0]))?.[1];
    if (state !== undefined) {
      const text = document.getElementById("status")?.textContent ?? "";
      w.__fleet.push({ t: "status", state, text, at: Date.now() });
    }
    info(...args);
  };
  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("messages");
    // Not the web page (a page for EventSource): nothing to observe.
    if (list === null) return;
    new MutationObserver((records) => {
      const at = Date.now();
      for (const r of records) {
        for (const node of r.addedNodes) {
          const counter = (node as HTMLElement).dataset?.counter;
          if (counter !== undefined) w.__fleet.push({ t: "msg", counter: Number(counter), at });
        }
      }
    }).observe(list, { childList: true });
  });
}

/** A page of its own browser context, loaded and waiting to start a stream. */
export interface BrowserTab {
  readonly context: BrowserContext;
  readonly page: Page;
}

/**
 * A context and page at `url`: the web page (`baseUrl` itself), or any page of
 * the same origin for EventSource. Opening is the slow part (seconds each on
 * a busy machine), so tabs are opened before any stream starts.
 */
export async function openTab(browser: Browser, url: string): Promise<BrowserTab> {
  const context = await browser.newContext();
  await context.addInitScript(recordPage);
  const page = await context.newPage();
  await page.goto(url);
  return { context, page };
}

/** Starts the web page's stream of `name` at `intervalMs` from 0, with no limit (the page has none). */
export async function startPageClient(tab: BrowserTab, name: string, intervalMs: number): Promise<BrowserClient> {
  const { context, page } = tab;
  await page.fill("#name", name);
  await page.fill("#interval", String(intervalMs / 1000));
  await page.click("#start");
  return browserClient(context, page, newTrace("browser-page", name, 0, 0, intervalMs), async () => {
    await page.click("#stop");
    await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "stopped", null, {
      timeout: 5000,
    });
  });
}

/** Opens the browser's EventSource on `${baseUrl}/stream` in `tab`, a page of the same origin. */
export async function startEventSourceClient(
  tab: BrowserTab,
  baseUrl: string,
  name: string,
  intervalMs: number,
  limit: number,
): Promise<BrowserClient> {
  const { context, page } = tab;
  const query = new URLSearchParams({ name, interval: `${intervalMs / 1000}s`, limit: String(limit) });
  await page.evaluate((url) => {
    const w = window as unknown as { __fleet: PageEvent[]; __source: EventSource };
    const source = new EventSource(url);
    w.__source = source;
    source.onmessage = (e) => {
      w.__fleet.push({ t: "msg", counter: Number(e.lastEventId), at: Date.now() });
    };
    // The server's "error" event (a MessageEvent, UNAVAILABLE at shutdown) and the
    // browser's own error (a plain Event: the connection ended or failed) share a name.
    source.addEventListener("error", (e) => {
      if (e instanceof MessageEvent) {
        const body = JSON.parse(e.data);
        w.__fleet.push({ t: "error-event", code: body.code, message: body.message, at: Date.now() });
      } else {
        w.__fleet.push({ t: "conn-error", closed: source.readyState === EventSource.CLOSED, at: Date.now() });
      }
    });
  }, `${baseUrl}/stream?${query}`);
  return browserClient(context, page, newTrace("browser-eventsource", name, 0, limit, intervalMs), async () => {
    await page.evaluate(() => (window as unknown as { __source: EventSource }).__source.close());
  });
}

function browserClient(context: BrowserContext, page: Page, empty: Trace, stopStream: () => Promise<void>) {
  const client: BrowserClient = {
    trace: empty,
    async refresh() {
      const events = await page.evaluate(() => (window as unknown as { __fleet: PageEvent[] }).__fleet);
      client.trace = traceOf(empty, events);
      return client.trace;
    },
    async stop() {
      try {
        await stopStream();
        await client.refresh();
        if (client.trace.outcome === "running") client.trace.outcome = "stopped";
        return client.trace;
      } finally {
        await context.close();
      }
    },
  };
  return client;
}

/** The page's record as a Trace, by the rules of traces.ts. */
function traceOf(empty: Trace, events: readonly PageEvent[]): Trace {
  const trace: Trace = { ...empty, counters: [], arrivals: [], breaks: [], outcome: "running" };
  const complete = () => trace.limit > 0 && trace.counters.length >= trace.limit;
  let lastWasErrorEvent = false;
  for (const e of events) {
    if (e.t === "msg") recordMessage(trace, e.counter, e.at);
    else if (e.t === "status") {
      if (e.state === "reconnecting") recordBreak(trace, "unavailable", e.text, e.at);
      else if (e.state === "error") {
        trace.outcome = "failed";
        trace.error = e.text;
      }
    } else if (e.t === "error-event") recordBreak(trace, e.code, e.message, e.at);
    else if (e.closed) {
      // EventSource closes for good on a 204 (complete) or on any other answer it cannot use (a 502).
      trace.outcome = complete() ? "done" : "failed";
      if (!complete())
        trace.error = "EventSource closed before the stream was complete (an answer other than 200 or 204)";
    } else if (!lastWasErrorEvent && !complete()) {
      recordBreak(trace, "unavailable", "connection lost", e.at);
    }
    lastWasErrorEvent = e.t === "error-event";
  }
  return trace;
}
