import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { describe, it } from "node:test";
import { ConfigError, defaults, type OptionSpec, options, parseConfig } from "../src/config/config.js";
import { HEAP_KIB_PER_STREAM, RSS_KIB_PER_STREAM, streamCapacity } from "../src/config/stream-capacity.js";

describe("parseConfig()", () => {
  it("should use the defaults when nothing is given", () => {
    assert.deepEqual(parseConfig([], {}), defaults);
    assert.equal(defaults.port, 8080);
    assert.equal(defaults.host, "0.0.0.0");
    assert.equal(defaults.defaultIntervalMs, 2000);
    assert.equal(defaults.shutdownGraceMs, 10_000);
    assert.equal(defaults.maxConnections, 50_000);
    assert.equal(defaults.maxStreamDurationMs, 0, "streams are not cut unless asked");
    assert.equal(defaults.maxHeaderBytes, 16_384);
    assert.equal(defaults.authTokenFile, undefined, "no authentication unless asked");
    assert.equal(defaults.authMetrics, false);
  });
  it("should read flags and environment, flags first", () => {
    const c = parseConfig(["--port", "9000", "--default-interval", "500ms"], {
      PORT: "7000",
      HOST: "127.0.0.1",
      SHUTDOWN_GRACE: "1m30s",
    });
    assert.equal(c.port, 9000);
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.defaultIntervalMs, 500);
    assert.equal(c.shutdownGraceMs, 90_000);
  });
  it("should refuse bad values with a message naming the flag", () => {
    for (const [args, flag] of [
      [["--port", "70000"], "--port"],
      [["--port", "eighty"], "--port"],
      [["--default-interval", "2 weeks"], "--default-interval"],
      [["--log-level", "loud"], "--log-level"],
      [["--tls-cert", "a.pem"], "--tls-cert"],
      [["--no-such-flag"], "--no-such-flag"],
    ] as const) {
      assert.throws(
        () => parseConfig([...args], {}),
        (e) => e instanceof ConfigError && e.message.includes(flag),
      );
    }
  });
  it("should say what it expected, in the words it always used", () => {
    for (const [args, message] of [
      [["--port", "70000"], '--port: expected a whole number from 0 to 65535, got "70000"'],
      [
        ["--shutdown-grace", "11m"],
        '--shutdown-grace: expected a duration such as 250ms, 2s or 1m, at most 600s, got "11m"',
      ],
      [["--heartbeat", "0s"], "--heartbeat: must be longer than 0s"],
      [["--metrics", "yes"], '--metrics: expected one of on, off, got "yes"'],
      [["--log-format", "xml"], '--log-format: expected one of json, pretty, auto, got "xml"'],
      [
        ["--cors-origin", "https://a.example/"],
        '--cors-origin: expected an origin such as https://example.com:8443, got "https://a.example/"',
      ],
      [["--tls-key", "k.pem"], "--tls-cert and --tls-key go together"],
      [
        ["--tls-client-ca", "ca.pem"],
        "--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in the TLS handshake",
      ],
      [["--auth-metrics", "on"], "--auth-metrics on needs --auth-token-file"],
      [
        ["--max-stream-duration", "8d"],
        '--max-stream-duration: expected a duration such as 250ms, 2s or 1m, at most 604800s, got "8d"',
      ],
      [["--max-header-bytes", "100"], '--max-header-bytes: expected a whole number from 1024 to 1048576, got "100"'],
    ] as const) {
      assert.throws(() => parseConfig([...args], {}), { name: "Error", message });
    }
  });
  it("should read --workers as a count or auto, one per available CPU", () => {
    assert.equal(defaults.workers, 1);
    assert.equal(parseConfig(["--workers", "3"], {}).workers, 3);
    assert.equal(parseConfig([], { WORKERS: "auto" }).workers, Math.min(availableParallelism(), 256));
    assert.throws(() => parseConfig(["--workers", "0"], {}), {
      message: '--workers: expected a whole number from 1 to 256, got "0"',
    });
  });
  it("should leave --max-connection-age off unless asked", () => {
    assert.equal(defaults.maxConnectionAgeMs, 0);
    assert.equal(defaults.maxConnectionAgeGraceMs, 30_000);
    const c = parseConfig(["--max-connection-age", "30m"], { MAX_CONNECTION_AGE_GRACE: "1m" });
    assert.equal(c.maxConnectionAgeMs, 30 * 60_000);
    assert.equal(c.maxConnectionAgeGraceMs, 60_000);
  });
  it("should read back every default as the docs and --help show it, from its environment variable", () => {
    const env: Record<string, string> = {};
    for (const o of Object.values(options) as OptionSpec<unknown>[]) {
      if (o.default !== undefined && !(Array.isArray(o.default) && o.default.length === 0)) {
        env[o.env] = o.kind.show(o.default);
      }
    }
    assert.ok(Object.keys(env).length >= 15);
    assert.deepEqual(parseConfig([], env), defaults);
  });
  it("should list every flag in docs/operations.md's configuration table", () => {
    const page = readFileSync(new URL("../docs/operations.md", import.meta.url), "utf8");
    const flags = Object.values(options).map((o) => o.flag);
    assert.ok(flags.length > 10);
    for (const flag of flags) assert.match(page, new RegExp(`^\\| \`--${flag}\``, "m"), `the table lacks --${flag}`);
  });
});

describe("--max-streams auto", () => {
  const GiB = 2 ** 30;
  it("should follow a container's memory limit, shared by the workers, in thousands", () => {
    const c = streamCapacity(1, { constrained: 2 * GiB, total: 24 * GiB, heapLimit: 4 * GiB });
    assert.equal(c.memorySource, "cgroup");
    assert.equal(c.bound, "memory");
    assert.equal(c.maxStreams, Math.floor(GiB / (RSS_KIB_PER_STREAM * 1024) / 1000) * 1000);
    assert.equal(
      streamCapacity(2, { constrained: 2 * GiB, total: 24 * GiB, heapLimit: 4 * GiB }).maxStreams,
      Math.floor(GiB / 2 / (RSS_KIB_PER_STREAM * 1024) / 1000) * 1000,
    );
  });

  it("should take the machine's memory without a limit, and stop at V8's heap limit", () => {
    const c = streamCapacity(1, { constrained: 2 ** 64, total: 24 * GiB, heapLimit: 4 * GiB });
    assert.equal(c.memorySource, "machine");
    assert.equal(c.bound, "heap");
    assert.equal(c.maxStreams, Math.floor((4 * GiB * 0.6) / (HEAP_KIB_PER_STREAM * 1024) / 1000) * 1000);
  });

  it("should never go below a thousand streams", () => {
    assert.equal(
      streamCapacity(8, { constrained: 64 * 2 ** 20, total: 24 * GiB, heapLimit: 4 * GiB }).maxStreams,
      1000,
    );
  });
});
