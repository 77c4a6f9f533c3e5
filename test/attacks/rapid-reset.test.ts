import { after, before, describe, it } from "node:test";
import { assertHeld, closedWithin, figures, startTarget, type Target, underAttack } from "../support/attack.js";
import { connectRaw, ErrorCode, firstGoaway, headerFields, requestHeaders, rstStream } from "../support/h2-frames.js";
import { grpcRequestHeaders, streamPath } from "../support/wire.js";

// Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM at once, 1,500 pairs
// in one write, on 50 connections one after the other, on each HTTP/2 entry.
// The reset budget (src/session-guard.ts, --h2-max-resets 200 in 10 s) must
// cut every connection with GOAWAY ENHANCE_YOUR_CALM long before nghttp2's
// own limit, close it within 5 s, and leave nothing behind, while a good
// client keeps its pace. Memory bound: 128 MiB over the server's resident
// size before (measured: 66 to 72 MiB on the lean path, 94 to 116 MiB through
// connect-node, the same for 20 connections as for 100: garbage the
// collector takes back, each connection's read setting up some 400 streams
// before their resets are counted).

const CONNECTIONS = 50;
const PAIRS = 1500;
const MEMORY_BOUND_MIB = 128;
const CLOSE_BOUND_MS = 5000;

const entries: Array<[entry: string, request: (id: number) => Buffer]> = [
  ["the gRPC lean path", (id) => requestHeaders(id, headerFields(grpcRequestHeaders()))],
  [
    "connect-node (Connect protocol)",
    (id) =>
      requestHeaders(id, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", streamPath],
        [":authority", "localhost"],
        ["content-type", "application/connect+json"],
      ]),
  ],
];

interface Cut {
  goaway: number | undefined;
  lastStreamId: number;
  closeMs: number;
}

describe("rapid reset over 50 connections in turn", () => {
  let target: Target;
  before(async () => {
    target = await startTarget();
  });
  after(() => target.stop());

  for (const [entry, request] of entries) {
    it(`should cut each with GOAWAY ENHANCE_YOUR_CALM and keep a good client's pace (${entry})`, async (t) => {
      const outcome = await underAttack(target, async () => {
        const cuts: Cut[] = [];
        for (let n = 0; n < CONNECTIONS; n++) {
          const c = await connectRaw(target.srv.port);
          const burst: Buffer[] = [];
          for (let i = 0; i < PAIRS; i++) burst.push(request(1 + 2 * i), rstStream(1 + 2 * i));
          c.socket.write(Buffer.concat(burst));
          c.socket.end();
          const closeMs = await closedWithin(c.closed, CLOSE_BOUND_MS, `connection ${n}`);
          const goaway = firstGoaway(c);
          cuts.push({ goaway: goaway?.code, lastStreamId: goaway?.lastStreamId ?? 0, closeMs });
        }
        return cuts;
      });
      const cuts = outcome.result;
      t.diagnostic(
        figures(outcome, {
          slowestCloseMs: Math.round(Math.max(...cuts.map((c) => c.closeMs))),
          highestLastStreamId: Math.max(...cuts.map((c) => c.lastStreamId)),
        }),
      );
      const wrong = cuts.filter((c) => c.goaway !== ErrorCode.ENHANCE_YOUR_CALM).length;
      // Cut by the budget (200 resets), not by nghttp2's limit of 1,000.
      const late = cuts.filter((c) => c.lastStreamId >= 2 * 1000).length;
      await assertHeld(target, outcome, MEMORY_BOUND_MIB, [
        ...(wrong > 0 ? [`${wrong} of ${CONNECTIONS} connections got no GOAWAY ENHANCE_YOUR_CALM`] : []),
        ...(late > 0 ? [`${late} connections were cut only past stream 2000`] : []),
      ]);
    });
  }
});
