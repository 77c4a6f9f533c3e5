import { describe, it } from "node:test";
import { assertHeld, figures, startTarget, type Target, underAttack } from "../support/attack.js";
import {
  connectRaw,
  Flag,
  FrameType,
  frame,
  headerFields,
  PREFACE,
  type RawH2,
  requestHeaders,
  settings,
  windowUpdate,
} from "../support/h2-frames.js";
import { liveStreams, until } from "../support/server-watch.js";
import { grpcRequestHeaders, requestEnvelope } from "../support/wire.js";

// Many streams at once: 10,000 opened in one go (ten connections of 1,000,
// each sent in a single write), and 50,000 held on 56 connections that are
// then dropped together. What each stream costs at its start and its end (a
// log line, counters, a span, a timer, a map entry) runs in the turn budget
// or costs next to nothing, so a good client beside them keeps its pace and
// /healthz answers within 1 s.

/** One write of `count` gRPC streams at a 1 h interval on a raw connection with a wide window. */
async function openStreams(port: number, count: number): Promise<RawH2> {
  const c = await connectRaw(port, {
    answerPings: true,
    first: Buffer.concat([PREFACE, settings(), windowUpdate(0, 1 << 30)]),
  });
  const body = requestEnvelope({ name: "mass", interval: { seconds: 3600n, nanos: 0 } });
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = 1 + 2 * i;
    frames.push(
      requestHeaders(id, headerFields(grpcRequestHeaders()), { endStream: false }),
      frame(FrameType.DATA, Flag.END_STREAM, id, body),
    );
  }
  c.socket.write(Buffer.concat(frames));
  return c;
}

const many = ["--max-streams", "200000", "--max-streams-per-client", "200000"];

describe("many streams at once", () => {
  it("should keep a good client's pace while 10,000 streams open at once", async (t) => {
    const target: Target = await startTarget(many);
    try {
      const outcome = await underAttack(target, async () => {
        const connections = await Promise.all(Array.from({ length: 10 }, () => openStreams(target.srv.port, 1000)));
        const opened = performance.now();
        await until(
          () => liveStreams(target.srv.url),
          (n) => n >= 10_001,
          60_000,
          "10,000 streams open",
        );
        const openMs = Math.round(performance.now() - opened);
        for (const c of connections) c.socket.destroy();
        return { openMs };
      });
      t.diagnostic(figures(outcome, outcome.result));
      await assertHeld(target, outcome, Number.POSITIVE_INFINITY);
    } finally {
      await target.stop();
    }
  });

  it("should keep a good client's pace while 50,000 streams on 56 connections are dropped at once", async (t) => {
    const target: Target = await startTarget(many);
    try {
      const connections: RawH2[] = [];
      for (let i = 0; i < 56; i++) connections.push(await openStreams(target.srv.port, 900));
      await until(
        () => liveStreams(target.srv.url),
        (n) => n >= 50_400,
        120_000,
        "50,400 streams open",
      );
      const outcome = await underAttack(target, async () => {
        const dropped = performance.now();
        for (const c of connections) c.socket.destroy();
        await until(
          () => liveStreams(target.srv.url),
          (n) => n <= 1,
          60_000,
          "only the good client's stream",
        );
        return { freedMs: Math.round(performance.now() - dropped) };
      });
      t.diagnostic(figures(outcome, outcome.result));
      await assertHeld(target, outcome, Number.POSITIVE_INFINITY);
    } finally {
      await target.stop();
    }
  });
});
