import assert from "node:assert/strict";
import * as net from "node:net";
import { describe, it } from "node:test";
import { assertHeld, figures, startTarget, type Target, underAttack } from "../support/attack.js";
import {
  connectRaw,
  Flag,
  FrameType,
  frame,
  headerFields,
  PREFACE,
  requestHeaders,
  settings,
  windowUpdate,
} from "../support/h2-frames.js";
import { sample, scrapeMetrics } from "../support/metrics-text.js";
import { cpuPercentOver, liveStreams, serverSendQueueBytes, until } from "../support/server-watch.js";
import { grpcRequestHeaders, requestEnvelope } from "../support/wire.js";

// Stalled readers: 1,000 clients ask for messages as fast as they can read
// them (interval 0), then read nothing, over HTTP/1.1 (a connection each)
// and over HTTP/2 (windows opened wide, then the socket is never read). Each
// may make the host hold what TCP_NOTSENT_LOWAT lets the kernel keep unsent
// (128 KiB, not the 4 MiB Linux grows a send buffer to) plus Node's 16 KiB
// and one batch; once that is full the server makes no more messages for it
// and its CPU falls idle; and --send-timeout closes every one of them, each
// with a log line that says so. Meanwhile a good client keeps its pace and
// /healthz on fresh connections answers within 1 s.

const READERS = 1000;
const SEND_TIMEOUT_S = 10;
/** TCP_NOTSENT_LOWAT (the default) plus what may be in flight to a peer whose window just closed. */
const KERNEL_BOUND_BYTES = 128 * 1024 + 64 * 1024;
/** The server's CPU once nothing more can be written: timers and probes only. */
const IDLE_CPU_PERCENT = 20;

/** Opens `n` HTTP/1.1 connections that each ask for a stream at interval 0 and then read nothing. */
async function stalledHttp1(port: number, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  // In batches, so the listen backlog never overflows into SYN retries of a second or more.
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, n - i) },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1");
          socket.on("error", () => {});
          socket.once("connect", () => {
            socket.write("GET /stream?name=stalled&interval=0s HTTP/1.1\r\nHost: localhost\r\n\r\n");
            socket.pause();
            resolve(socket);
          });
          socket.once("error", reject);
        }),
    );
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

/** `connections` HTTP/2 connections of `perConnection` gRPC streams at interval 0, windows wide open, never read. */
async function stalledHttp2(port: number, connections: number, perConnection: number): Promise<net.Socket[]> {
  const wide = 2 ** 31 - 1;
  const first = Buffer.concat([PREFACE, settings([[0x4, wide]]), windowUpdate(0, wide - 65_535)]);
  const body = requestEnvelope({ name: "stalled", interval: { seconds: 0n, nanos: 0 } });
  const sockets: net.Socket[] = [];
  for (let c = 0; c < connections; c++) {
    const raw = await connectRaw(port, { first });
    const frames: Buffer[] = [];
    for (let i = 0; i < perConnection; i++) {
      const id = 1 + 2 * i;
      frames.push(
        requestHeaders(id, headerFields(grpcRequestHeaders()), { endStream: false }),
        frame(FrameType.DATA, Flag.END_STREAM, id, body),
      );
    }
    raw.socket.write(Buffer.concat(frames));
    // From here on the peer reads nothing: not the DATA, not our PINGs.
    raw.socket.pause();
    sockets.push(raw.socket);
  }
  return sockets;
}

/**
 * Resolves with the message count once it grew by no more than the good
 * client's own messages (10 a second) over 500 ms: nothing more is made for
 * the stalled readers. Rejects after 15 s.
 */
async function producingNoMore(url: string): Promise<number> {
  let last = sample(await scrapeMetrics(url), "stream_messages_sent_total");
  const deadline = performance.now() + 15_000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = sample(await scrapeMetrics(url), "stream_messages_sent_total");
    if (sent - last <= 10) return sent;
    if (performance.now() > deadline)
      throw new Error(`the server still made ${sent - last} messages in 500 ms after 15 s`);
    last = sent;
  }
}

/** Holds the readers, checks every bound while they stall, and waits for --send-timeout to close them. */
async function holdStalled(target: Target, open: () => Promise<net.Socket[]>) {
  const sockets = await open();
  try {
    await until(
      () => liveStreams(target.srv.url),
      (n) => n >= READERS + 1,
      30_000,
      `${READERS} streams open`,
    );
    const produced = await producingNoMore(target.srv.url);
    const cpu = await cpuPercentOver(target.pid, 1000);
    const queues = await serverSendQueueBytes(target.srv.port);
    const stalledAt = performance.now();
    // Only the good client's stream is left once --send-timeout has closed the others.
    await until(
      () => liveStreams(target.srv.url),
      (n) => n <= 1,
      SEND_TIMEOUT_S * 1000 + 10_000,
      "1 stream live",
    );
    // The log lines come a moment after the streams' ends, and over a pipe.
    const timedOut = await until(
      () => target.srv.lines.filter((l) => l.includes('"reason":"send_timeout"')).length,
      (n) => n >= READERS,
      5000,
      `${READERS} lines with reason send_timeout`,
    ).catch(() => target.srv.lines.filter((l) => l.includes('"reason":"send_timeout"')).length);
    return {
      produced,
      cpu: Math.round(cpu),
      queues,
      timedOut,
      closedAfterMs: Math.round(performance.now() - stalledAt),
    };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

describe("stalled readers: 1,000 streams at interval 0 whose clients stop reading", () => {
  const cases: Array<[string, (port: number) => Promise<net.Socket[]>]> = [
    ["HTTP/1.1, a connection each", (port) => stalledHttp1(port, READERS)],
    ["HTTP/2, 10 connections of 100 streams with open windows", (port) => stalledHttp2(port, 10, READERS / 10)],
  ];
  for (const [name, open] of cases) {
    it(`should hold each to its kernel and Node buffers, stop making messages, serve a good client and close them after --send-timeout (${name})`, async (t) => {
      // No PINGs: a peer that reads nothing never answers one either, and the
      // PING timeout would close its connection first; this is --send-timeout's test.
      const target = await startTarget(["--send-timeout", `${SEND_TIMEOUT_S}s`, "--h2-ping-interval", "0s"]);
      try {
        const outcome = await underAttack(target, () => holdStalled(target, () => open(target.srv.port)));
        const { cpu, queues, timedOut } = outcome.result;
        t.diagnostic(figures(outcome, { ...outcome.result }));
        const problems: string[] = [];
        if (cpu >= IDLE_CPU_PERCENT) problems.push(`the server still used ${cpu}% of a core with every reader stalled`);
        if (queues.largest > KERNEL_BOUND_BYTES) {
          problems.push(
            `one connection's kernel send queue held ${queues.largest} bytes (bound ${KERNEL_BOUND_BYTES})`,
          );
        }
        if (timedOut < READERS) problems.push(`${timedOut} of ${READERS} streams logged reason send_timeout`);
        await assertHeld(target, outcome, 256, problems);
        assert.ok(queues.sockets > 0, "ss saw the server's connections");
      } finally {
        await target.stop();
      }
    });
  }
});
