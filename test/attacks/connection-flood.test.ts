import assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { assertHeld, figures, maxOpenFiles, startTarget, type Target, underAttack } from "../support/attack.js";
import { fdCount, until } from "../support/server-watch.js";

// A connection flood: 2,000 idle TCP connections against a server allowed
// 1,024 open files and --max-connections 200. Past the limit the server
// must refuse (close at once) instead of running out of descriptors; the
// connections it holds are served; a good client whose connections were
// open before keeps its pace (its probes share one kept connection: at the
// limit a new one is refused, as it should be); once the flood goes, new
// connections are accepted again. Memory bound: 64 MiB.
//
// Needs --max-connections, which issue 12 asks for. Without it (measured on
// the same setup) the server accepts until it has 1,024 descriptors, the
// kernel's accept queue then closes the rest, and /healthz on a new
// connection fails for as long as the flood holds (42 of 47 probes).

const LIMIT = 200;
/** The test holds every connection of the flood at once: stay inside its own `ulimit -n`. */
const FLOOD = Math.min(2000, maxOpenFiles() - 300);
const MEMORY_BOUND_MIB = 64;

interface Flooder {
  socket: net.Socket;
  openedAt: number;
  closedAt?: number;
}

function openIdle(port: number): Promise<Flooder> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const f: Flooder = { socket, openedAt: performance.now() };
    socket.once("connect", () => resolve(f));
    socket.on("close", () => {
      f.closedAt = performance.now();
    });
    socket.on("error", () => resolve(f));
  });
}

/** GET /healthz on a socket that is already open; resolves with the status line, or "" if it closed first. */
function healthzOn(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.once("close", () => resolve(got.split("\r\n", 1)[0] ?? ""));
    socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  });
}

function freshHealthz(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/healthz`, { agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(5000, () => req.destroy(new Error("/healthz did not answer within 5 s")));
    req.on("error", reject);
  });
}

describe("connection flood", () => {
  let target: Target;
  before(async () => {
    // --headers-timeout 30s: the flood's idle connections are not cut by it during the test.
    // The flood comes from 127.0.0.1 alone: the whole --max-connections is its to take here.
    const perClient = ["--max-connections-per-client", String(LIMIT)];
    target = await startTarget(["--max-connections", String(LIMIT), ...perClient, "--headers-timeout", "30s"], {
      maxOpenFiles: 1024,
    });
  });
  after(() => target?.stop());

  it(`should refuse connections past --max-connections ${LIMIT}, serve those it holds, and accept again after`, async (t) => {
    const outcome = await underAttack(
      target,
      async () => {
        const flood: Flooder[] = [];
        for (let i = 0; i < FLOOD; i += 100) {
          flood.push(...(await Promise.all(Array.from({ length: 100 }, () => openIdle(target.srv.port)))));
        }
        // The good client holds two connections of the limit (its stream and its probes).
        const held = await until(
          () => flood.filter((f) => f.closedAt === undefined).length,
          (n) => n <= LIMIT - 2,
          5000,
          `the server to refuse all but ${LIMIT - 2} of the flood`,
        );
        const peakFds = fdCount(target.pid);
        const refused = flood.filter((f) => f.closedAt !== undefined);
        const slowestRefusalMs = Math.max(...refused.map((f) => (f.closedAt ?? 0) - f.openedAt));
        const kept = flood.filter((f) => f.closedAt === undefined);
        const answers = await Promise.all(kept.map((f) => healthzOn(f.socket)));
        for (const f of flood) f.socket.destroy();
        return { held, peakFds, refused: refused.length, slowestRefusalMs: Math.round(slowestRefusalMs), answers };
      },
      { freshProbes: false },
    );
    const { answers, ...rest } = outcome.result;
    t.diagnostic(figures(outcome, rest));
    const unserved = answers.filter((a) => a !== "HTTP/1.1 200 OK").length;
    await assertHeld(target, outcome, MEMORY_BOUND_MIB, [
      ...(rest.held < LIMIT - 4 ? [`only ${rest.held} flood connections were held, limit ${LIMIT}`] : []),
      ...(rest.peakFds >= target.baselineFds + LIMIT + 10 ? [`the server had ${rest.peakFds} descriptors open`] : []),
      ...(rest.slowestRefusalMs >= 2000 ? [`a refused connection stayed ${rest.slowestRefusalMs} ms`] : []),
      ...(unserved > 0 ? [`${unserved} connections the server held were not served`] : []),
    ]);
    assert.equal(await freshHealthz(target.srv.url), 200);
  });
});
