import assert from "node:assert/strict";
import type { OutgoingHttpHeaders } from "node:http2";
import { describe, it } from "node:test";
import { assertHeld, figures, startTarget, type Target, underAttack } from "../support/attack.js";
import {
  connectRaw,
  Flag,
  FrameType,
  frame,
  getRequest,
  headerFields,
  PREFACE,
  type RawH2,
  requestHeaders,
  settings,
  windowUpdate,
} from "../support/h2-frames.js";
import { sample, scrapeMetrics, total } from "../support/metrics-text.js";
import { peakRssMiB, resetPeakRss, rssMiB, until } from "../support/server-watch.js";
import { envelope, grpcRequestHeaders, requestEnvelope, streamPath } from "../support/wire.js";

// Zero window: one connection opens 1,000 streams at interval 0 after
// advertising SETTINGS_INITIAL_WINDOW_SIZE 0, answers PINGs (so no timeout
// finds it) and never sends a WINDOW_UPDATE: not one byte of DATA may leave.
// The memory bound: such streams cost the server at most 128 KiB each more
// than the same number of streams waiting politely (interval 1 h, normal
// window), measured as peak RSS on a fresh server of its own. What a stream
// may hold is bounded by design: Node's 16 KiB high-water mark of the stream,
// plus at most one 8 KiB batch of messages (entries/kit/write-batch.ts); the
// rest of the bound is the garbage a flood of 1,000 streams leaves between
// two collections, which peak RSS counts. A server that goes on making
// messages for a peer that reads nothing (it once did: 860 KiB a stream, and
// growing) fails it. Meanwhile a good client keeps its pace, and when the
// attacker goes everything is freed.

const STREAMS = 1000;
const EXTRA_PER_STREAM_KIB = 128;

type Entry = "grpc" | "connect" | "get";

const entries: Array<[Entry, string]> = [
  ["grpc", "the gRPC lean path"],
  ["connect", "connect-node (Connect protocol)"],
  ["get", "GET /stream over HTTP/2 (connect-node's fallback)"],
];

/** `count` streams of `entry` on one raw connection, all in one write. */
async function openStreams(port: number, entry: Entry, count: number, zeroWindow: boolean): Promise<RawH2> {
  // The polite client opens the connection's window too: 1,000 first messages pass its default 64 KiB.
  const first = zeroWindow
    ? Buffer.concat([PREFACE, settings([[0x4, 0]])])
    : Buffer.concat([PREFACE, settings(), windowUpdate(0, 1 << 30)]);
  const c = await connectRaw(port, { answerPings: true, first });
  const seconds = zeroWindow ? 0 : 3600;
  const post = (id: number, headers: OutgoingHttpHeaders) =>
    requestHeaders(id, headerFields(headers), { endStream: false });
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = 1 + 2 * i;
    if (entry === "grpc") {
      frames.push(post(id, grpcRequestHeaders()));
      const body = requestEnvelope({ name: "zero", interval: { seconds: BigInt(seconds), nanos: 0 } });
      frames.push(frame(FrameType.DATA, Flag.END_STREAM, id, body));
    } else if (entry === "connect") {
      frames.push(post(id, { ":method": "POST", ":path": streamPath, "content-type": "application/connect+json" }));
      const json = Buffer.from(JSON.stringify({ name: "zero", interval: `${seconds}s` }));
      frames.push(frame(FrameType.DATA, Flag.END_STREAM, id, envelope(json)));
    } else {
      frames.push(getRequest(id, `/stream?name=zero&interval=${seconds}s`));
    }
  }
  c.socket.write(Buffer.concat(frames));
  return c;
}

/** Resolves once the server's message count held still for 500 ms (at most 10 s): it produces no more. */
async function producingNoMore(url: string): Promise<number> {
  let seen = -1;
  let since = performance.now();
  const deadline = since + 10_000;
  for (;;) {
    const sent = sample(await scrapeMetrics(url), "stream_messages_sent_total");
    if (sent !== seen) {
      seen = sent;
      since = performance.now();
    } else if (performance.now() - since >= 500) {
      return sent;
    }
    if (performance.now() > deadline) return sent;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What `count` streams cost a fresh server at their peak, in MiB; they are closed again after. */
async function politeCost(entry: Entry): Promise<number> {
  const target = await startTarget();
  try {
    const before = rssMiB(target.pid);
    resetPeakRss(target.pid);
    const c = await openStreams(target.srv.port, entry, STREAMS, false);
    await until(
      () => c.frames.filter((f) => f.type === FrameType.DATA).length,
      (n) => n >= STREAMS,
      20_000,
      `the first message of ${STREAMS} streams`,
    );
    const cost = peakRssMiB(target.pid) - before;
    c.socket.destroy();
    return cost;
  } finally {
    await target.stop();
  }
}

describe("zero window: 1,000 streams at interval 0 whose client never opens its window", () => {
  for (const [entry, name] of entries) {
    it(`should hold no more than ${EXTRA_PER_STREAM_KIB} KiB per stream beyond a polite stream's cost, serve a good client, and free everything (${name})`, async (t) => {
      const polite = await politeCost(entry);
      const target: Target = await startTarget();
      try {
        const outcome = await underAttack(target, async () => {
          const c = await openStreams(target.srv.port, entry, STREAMS, true);
          await until(
            async () => total(await scrapeMetrics(target.srv.url), "streams_live"),
            (n) => n >= STREAMS + 1,
            20_000,
            `${STREAMS} streams open`,
          );
          const produced = await producingNoMore(target.srv.url);
          const dataFrames = c.frames.filter((f) => f.type === FrameType.DATA).length;
          c.socket.destroy();
          return { produced, dataFrames };
        });
        const extraKiB = ((outcome.growthMiB - polite) * 1024) / STREAMS;
        t.diagnostic(
          figures(outcome, {
            ...outcome.result,
            politeCostMiB: Math.round(polite * 10) / 10,
            extraPerStreamKiB: Math.round(extraKiB),
          }),
        );
        assert.equal(outcome.result.dataFrames, 0, "DATA sent into a zero window");
        const memory =
          extraKiB < EXTRA_PER_STREAM_KIB
            ? []
            : [
                `each zero-window stream cost ${extraKiB.toFixed(0)} KiB more than a polite one ` +
                  `(${outcome.growthMiB.toFixed(1)} MiB for ${STREAMS}, against ${polite.toFixed(1)} MiB): ` +
                  `the server made ${outcome.result.produced} messages it could not send`,
              ];
        // The bound here is relative (above), not a growth in MiB.
        await assertHeld(target, outcome, Number.POSITIVE_INFINITY, memory);
      } finally {
        await target.stop();
      }
    });
  }
});
