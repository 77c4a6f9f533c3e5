import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { assertHeld, figures, maxOpenFiles, startTarget, type Target, underAttack } from "../support/attack.js";
import { PREFACE } from "../support/h2-frames.js";

// Slow-loris over HTTP/1.1: thousands of connections that send a request
// head a byte at a time, or the HTTP/2 preface a byte at a time, or nothing,
// or one request and then nothing. Each is cut by --headers-timeout (2 s
// here; Node checks it once a second) or --keep-alive-timeout (2 s), so each
// must be closed within 6 s of its start (3 times the timeouts); a dribbled HTTP/1.1 head gets 408
// with a JSON body. A good client still connects (its /healthz probes open a
// fresh connection each) and keeps its pace. Memory bound: 64 MiB.

const HEADERS_TIMEOUT_S = 2;
const CUT_WITHIN_MS = 6000;
const MEMORY_BOUND_MIB = 64;
/** A byte every this often: a 40-byte head would take 10 s. */
const DRIBBLE_EVERY_MS = 250;

type Kind = "http1-head" | "h2-preface" | "silent" | "idle-after-request";

interface Loris {
  kind: Kind;
  /** Bytes of its head sent so far. */
  written: number;
  openedAt: number;
  closedAt?: number;
  received: string;
}

const heads: Record<Kind, string> = {
  "http1-head": "GET /stream?name=loris HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n\r\n",
  "h2-preface": PREFACE.toString("latin1"),
  silent: "",
  "idle-after-request": "",
};

/** Opens one attacking connection; resolves once connected. */
function openLoris(port: number, kind: Kind): Promise<{ loris: Loris; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const loris: Loris = { kind, written: 0, openedAt: performance.now(), received: "" };
    const socket = net.connect(port, "127.0.0.1", () => {
      if (kind === "idle-after-request") socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
      resolve({ loris, socket });
    });
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      loris.received += d;
    });
    socket.on("close", () => {
      loris.closedAt = performance.now();
    });
    socket.on("error", () => {});
    socket.once("error", reject);
  });
}

describe("slow-loris over HTTP/1.1", () => {
  let target: Target;
  before(async () => {
    target = await startTarget([
      "--headers-timeout",
      `${HEADERS_TIMEOUT_S}s`,
      "--keep-alive-timeout",
      `${HEADERS_TIMEOUT_S}s`,
      // Every connection comes from 127.0.0.1: this attack is held by the timeouts, not by the per-client share.
      "--max-connections-per-client",
      "50000",
    ]);
  });
  after(() => target.stop());

  it("should cut thousands of slow and silent connections by the head and idle timeouts, while a good client connects", async (t) => {
    // The test holds every connection and so does the server: stay well inside `ulimit -n`.
    const total = Math.min(2000, Math.floor((maxOpenFiles() - 200) / 2));
    const kinds: Kind[] = ["http1-head", "h2-preface", "silent", "idle-after-request"];
    const outcome = await underAttack(target, async () => {
      const open: Array<{ loris: Loris; socket: net.Socket }> = [];
      let sentBytes = 0;
      // From the start: each connection sends its first byte within one period of opening.
      const dribble = setInterval(() => {
        for (const { loris, socket } of open) {
          const head = heads[loris.kind];
          if (socket.destroyed || loris.written >= head.length) continue;
          socket.write(head.slice(loris.written, loris.written + 1));
          loris.written++;
          sentBytes++;
        }
      }, DRIBBLE_EVERY_MS);
      // In batches, so that the listen backlog (511) never overflows into SYN retries.
      for (let i = 0; i < total; i += 200) {
        const batch = Array.from({ length: Math.min(200, total - i) }, (_, j) =>
          openLoris(target.srv.port, kinds[(i + j) % kinds.length] as Kind),
        );
        open.push(...(await Promise.all(batch)));
      }
      const started = performance.now();
      while (open.some((o) => !o.socket.destroyed) && performance.now() - started < 3 * CUT_WITHIN_MS) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      clearInterval(dribble);
      const stillOpen = open.filter((o) => !o.socket.destroyed).length;
      for (const o of open) o.socket.destroy();
      return { lorises: open.map((o) => o.loris), stillOpen, sentBytes };
    });
    const { lorises, stillOpen, sentBytes } = outcome.result;
    const lifetimes = lorises.map((l) => (l.closedAt ?? Number.POSITIVE_INFINITY) - l.openedAt);
    const byKind = Object.fromEntries(
      kinds.map((kind) => {
        const mine = lorises.filter((l) => l.kind === kind);
        const lives = mine.map((l) => (l.closedAt ?? Number.POSITIVE_INFINITY) - l.openedAt);
        return [kind, { count: mine.length, longestMs: Math.round(Math.max(...lives)) }];
      }),
    );
    t.diagnostic(figures(outcome, { connections: total, stillOpen, sentBytes, byKind }));
    assert.equal(stillOpen, 0, `${stillOpen} of ${total} connections were never cut`);
    const late = lifetimes.filter((ms) => ms > CUT_WITHIN_MS).length;
    assert.equal(late, 0, `${late} connections lived longer than ${CUT_WITHIN_MS} ms`);
    for (const l of lorises.filter((l) => l.kind === "http1-head")) {
      assert.match(l.received, /^HTTP\/1\.1 408 /);
      const body = JSON.parse(l.received.slice(l.received.indexOf("\r\n\r\n") + 4));
      assert.equal(body.code, "deadline_exceeded");
    }
    await assertHeld(target, outcome, MEMORY_BOUND_MIB);
  });
});
