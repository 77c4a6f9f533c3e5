import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { createLogger, isoTime, type LoggerOptions } from "../src/ops/log.js";
import { startProcess, stop } from "./support/process.js";

// The logger every part of the server writes through (pino underneath):
// the line's shape that log shippers and the tests read, client text kept
// inside its field, and credentials that never reach a line.

function capture(options: LoggerOptions = {}) {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", ...options, write: (l) => lines.push(l) });
  return { logger, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("createLogger()", () => {
  it("should write one JSON object a line: time as an ISO string, level as a name, msg, the fields, no pid or hostname", () => {
    const { logger, lines, parsed } = capture();
    logger.info("stream ended", { id: "r1", peer: "127.0.0.1:5000", sent: 3, duration_ms: 12, error: undefined });
    logger.warn("plain");
    assert.equal(lines.length, 2);
    assert.ok(lines.every((l) => l.endsWith("}\n") && l.split("\n").length === 2));
    const [ended, plain] = parsed();
    assert.deepEqual(Object.keys(ended ?? {}).sort(), ["duration_ms", "id", "level", "msg", "peer", "sent", "time"]);
    assert.equal(ended?.level, "info");
    assert.equal(ended?.msg, "stream ended");
    assert.equal(ended?.sent, 3);
    assert.match(String(ended?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(plain && { level: plain.level, msg: plain.msg }, { level: "warn", msg: "plain" });
  });

  it("should keep client text inside its JSON field, whatever it contains", () => {
    const { logger, lines, parsed } = capture();
    logger.info("stream started", { name: 'Eve"\n{"level":"error","msg":"forged"}' });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.split("\n").length, 2, "one line and its newline");
    assert.equal(parsed()[0]?.name, 'Eve"\n{"level":"error","msg":"forged"}');
  });

  it("should quote client text in the terminal format too", () => {
    const { logger, lines } = capture({ format: "pretty" });
    logger.info("stream started", { name: "a\nb", sent: 3 });
    assert.match(lines[0] as string, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}stream started name="a\\nb" sent=3\n$/);
  });

  it("should drop lines below the level", () => {
    const { logger, lines } = capture({ level: "warn" });
    logger.info("quiet");
    logger.warn("loud");
    assert.equal(lines.length, 1);
    const silent = capture({ level: "silent" });
    silent.logger.error("nothing");
    assert.equal(silent.lines.length, 0);
  });

  describe("with credentials in the fields", () => {
    const secret = "s3cr3t-T0KEN";

    it("should redact an Authorization value, a token and a cookie, at the top level and in headers", () => {
      const { logger, lines, parsed } = capture();
      const headers = { authorization: `Bearer ${secret}`, "proxy-authorization": `Basic ${secret}` };
      // LogFields are flat; a caller that logs a headers object gets the same treatment.
      (logger.info as (msg: string, fields: Record<string, unknown>) => void)("request", {
        authorization: `Bearer ${secret}`,
        "proxy-authorization": `Basic ${secret}`,
        token: secret,
        access_token: secret,
        cookie: `session=${secret}`,
        headers: { ...headers, host: "example.com" },
        req: { headers },
      });
      assert.ok(!lines[0]?.includes(secret), lines[0]);
      const line = parsed()[0] as Record<string, Record<string, unknown>>;
      assert.equal(line.authorization, "[redacted]");
      assert.equal(line.token, "[redacted]");
      assert.equal(line.headers?.authorization, "[redacted]");
      assert.equal(line.headers?.host, "example.com", "other headers stay");
    });

    it("should cut the access_token out of a logged URL, in a field or in the message", () => {
      const { logger, lines, parsed } = capture();
      logger.info(`GET /stream?access_token=${secret}&name=Ada`, {
        url: `/stream?name=Ada&access_token=${secret}`,
        referer: `https://app.example/page?x=1&access_token=${secret}#top`,
      });
      assert.ok(!lines[0]?.includes(secret), lines[0]);
      const line = parsed()[0];
      assert.equal(line?.msg, "GET /stream?access_token=[redacted]&name=Ada");
      assert.equal(line?.url, "/stream?name=Ada&access_token=[redacted]");
      assert.equal(line?.referer, "https://app.example/page?x=1&access_token=[redacted]#top");
    });

    it("should leave a line without credentials as it was", () => {
      const { logger, parsed } = capture();
      logger.info("stream started", { name: "access_token", url: "/stream?name=Ada" });
      assert.deepEqual(
        { name: parsed()[0]?.name, url: parsed()[0]?.url },
        { name: "access_token", url: "/stream?name=Ada" },
      );
    });
  });

  it("should write to stdout through pino's asynchronous destination, and lose no line when the process exits", async () => {
    // The default destination, in a process of its own: 2,000 lines logged in
    // one turn, then process.exit() at once, which must flush what is pending.
    const script = [
      'import { createLogger } from "./src/ops/log.ts";',
      "const log = createLogger();",
      'for (let i = 0; i < 2000; i++) log.info("line", { i, authorization: "Bearer s3cr3t", url: "/s?access_token=s3cr3t" });',
      "process.exit(0);",
    ].join("\n");
    const child = startProcess("--input-type=module", ["-e", script]);
    assert.equal(await child.exited, 0, child.stderr());
    assert.equal(child.lines.length, 2000);
    const last = JSON.parse(child.lines.at(-1) as string) as Record<string, unknown>;
    assert.equal(last.i, 1999);
    assert.ok(child.lines.every((l) => !l.includes("s3cr3t")));
  });

  it("should let the last lines out even when the flush came while a write was held up by a slow reader", async () => {
    // Some 300 KiB in one turn fills the pipe, so a write is on its way when
    // the flush timer fires. Then a line that fills a write of its own
    // (sonic-boom's maxWrite, 16 KiB) and "last", which starts the next one:
    // when the writes end, "last" alone is left, below the gathering
    // threshold, and only the timer can send it.
    const script = [
      'import { createLogger } from "./src/ops/log.ts";',
      "const fields = (i) => ({ i: String(i).padStart(5, '0'), pad: 'x'.repeat(300) });",
      "let size = 0;",
      "createLogger({ write: (l) => { size = Buffer.byteLength(l); } }).info('filler', { pad: '' });",
      "const log = createLogger();",
      "for (let i = 0; i < 1000; i++) log.info('bulk', fields(i));",
      "log.info('filler', { pad: 'x'.repeat(16384 - 16 - size) });",
      'log.info("last");',
      "setInterval(() => {}, 1000);",
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.stdout.pause();
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      let text = "";
      const last = new Promise<void>((resolve) => {
        child.stdout.on("data", (chunk: Buffer) => {
          text += chunk.toString();
          if (text.includes('"msg":"last"')) resolve();
        });
      });
      child.stdout.resume();
      await Promise.race([
        last,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`no "last" line in 5 s; ${text.length} bytes`)), 5000),
        ),
      ]);
      const bulk = text.split("\n").filter((l) => l.includes('"bulk"'));
      assert.ok(bulk.length > 500, `${bulk.length} bulk lines`);
      assert.deepEqual(
        bulk.map((l) => (JSON.parse(l) as { i: string }).i),
        bulk.map((_, i) => String(i).padStart(5, "0")),
        "every bulk line, in order",
      );
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("should let a lone line out without waiting for others or for the exit", async () => {
    // Lines gather into fewer writes; one logged on a quiet server still leaves, within the flush window.
    const script = [
      'import { createLogger } from "./src/ops/log.ts";',
      'createLogger().info("alone");',
      "setInterval(() => {}, 1000);",
    ].join("\n");
    const child = startProcess("--input-type=module", ["-e", script]);
    try {
      const line = await child.waitForLine((l) => l.includes('"alone"'), 5000);
      assert.equal((JSON.parse(line) as { msg: string }).msg, "alone");
    } finally {
      await stop(child);
    }
  });
});

describe("isoTime()", () => {
  it("should write what Date's toISOString() writes, for every millisecond of a second and across seconds", () => {
    const base = Date.UTC(2026, 11, 3, 23, 59, 58);
    for (let ms = base; ms < base + 2500; ms++) assert.equal(isoTime(ms), new Date(ms).toISOString());
    for (const ms of [0, 1, 999, 1000, 86_400_000 - 1, Date.UTC(2038, 0, 19, 3, 14, 8)]) {
      assert.equal(isoTime(ms), new Date(ms).toISOString());
    }
  });
});
