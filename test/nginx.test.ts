import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { clientCases } from "./support/clients.js";
import { collect, grpcJsClient, grpcJsStream } from "./support/grpc-js.js";
import { type Nginx, renderSite, shippedConfig, startNginx, templated } from "./support/nginx.js";
import { type ServerProc, startServerProcess, stop } from "./support/process.js";
import { grpcRequestHeaders, requestEnvelope } from "./support/wire.js";

// deploy/nginx/stream-service.conf as shipped, run by Debian's nginx on
// loopback in front of three real instances: every protocol goes through
// message by message, streams spread, and an instance that is killed or
// drains stops getting new streams while the others take them.

/** A message as a client saw it: when the server stamped it, and when it arrived. */
interface Arrival {
  counter: bigint;
  stampedAt: number;
  receivedAt: number;
}

/**
 * Buffering anywhere on the way would hold message 0 until more bytes came:
 * it must arrive before the server has even stamped message 1.
 */
function assertUnbuffered(arrivals: Arrival[], what: string): void {
  assert.deepEqual(
    arrivals.map((a) => a.counter),
    [0n, 1n],
    what,
  );
  const [first, second] = arrivals as [Arrival, Arrival];
  assert.ok(
    first.receivedAt < second.stampedAt,
    `${what}: message 0 arrived at ${first.receivedAt}, message 1 was stamped at ${second.stampedAt}`,
  );
}

const msOf = (ts: { seconds: bigint; nanos: number } | undefined) =>
  ts === undefined ? Number.NaN : Number(ts.seconds) * 1000 + ts.nanos / 1e6;

/** Runs curl and timestamps every line of its output as it arrives. */
async function curlLines(args: string[]): Promise<Array<{ line: string; at: number }>> {
  const child = spawn("curl", ["-sN", "--max-time", "20", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const lines: Array<{ line: string; at: number }> = [];
  createInterface({ input: child.stdout }).on("line", (line) => lines.push({ line, at: Date.now() }));
  const [code] = await once(child, "close");
  assert.equal(code, 0, `curl ${args.join(" ")}`);
  return lines;
}

describe("nginx with deploy/nginx/stream-service.conf, in front of three instances", () => {
  let instances: ServerProc[] = [];
  let nginx: Nginx;
  const alive = () => instances.filter((i) => i.child.exitCode === null && i.child.signalCode === null);

  before(async () => {
    instances = await Promise.all([0, 1, 2].map(() => startServerProcess(["--shutdown-grace", "5s"])));
    nginx = await startNginx(instances.map((i) => i.port));
  });

  after(async () => {
    await nginx?.stop();
    await Promise.all(instances.map((i) => stop(i, "SIGKILL")));
  });

  /** Which instance logged the start of the stream called `name`. */
  async function servedBy(name: string): Promise<number> {
    const find = () =>
      instances.findIndex((i) => i.lines.some((l) => l.includes('"stream started"') && JSON.parse(l).name === name));
    if (find() === -1) await Promise.any(alive().map((i) => i.waitUntil(() => find() !== -1, 5000)));
    return find();
  }

  const grpcTransport = () => createGrpcTransport({ baseUrl: nginx.h2cUrl });
  const connectTransport = () => createConnectTransport({ baseUrl: nginx.httpUrl, httpVersion: "1.1" });

  /** `count` short streams over `transport`, one after another; the instance that served each. */
  async function shortStreams(transport: Transport, prefix: string, count: number): Promise<number[]> {
    const client = createClient(StreamService, transport);
    const served: number[] = [];
    for (let n = 0; n < count; n++) {
      const name = `${prefix} ${n}`;
      const counters: bigint[] = [];
      for await (const m of client.stream({ name, limit: 2n, interval: durationFromMs(0) })) counters.push(m.counter);
      assert.deepEqual(counters, [0n, 1n], name);
      served.push(await servedBy(name));
    }
    return served;
  }

  /** An endless stream; resolves `first` at its first message and `ended` with how it ended. */
  function endlessStream(transport: Transport, name: string) {
    const abort = new AbortController();
    let firstSeen: () => void = () => {};
    const first = new Promise<void>((resolve) => {
      firstSeen = resolve;
    });
    const ended = (async () => {
      try {
        for await (const _ of createClient(StreamService, transport).stream(
          { name, interval: durationFromMs(100) },
          { signal: abort.signal },
        )) {
          firstSeen();
        }
        return undefined;
      } catch (e) {
        return ConnectError.from(e);
      } finally {
        firstSeen();
      }
    })();
    return { first, ended, cancel: () => abort.abort() };
  }

  it("should run the shipped file with only its listen ports and upstream servers changed", async () => {
    const shipped = await readFile(shippedConfig, "utf8");
    const rendered = renderSite(shipped, 1111, 2222, [3333, 4444, 5555]);
    const kept = (text: string) => text.split("\n").filter((l) => !templated.test(l));
    assert.deepEqual(kept(rendered), kept(shipped));
    assert.match(rendered, /^ {4}listen 127\.0\.0\.1:2222 http2;/m);
    assert.equal(rendered.match(/server 127\.0\.0\.1:4444 max_fails=0;/g)?.length, 2);
  });

  describe("every protocol, message by message (interval 500 ms: message 0 arrives before message 1 exists)", () => {
    for (const c of clientCases) {
      it(`should pass ${c.name} through (${c.httpVersion === "2" ? "h2c" : "HTTP/1.1"} port)`, async () => {
        const baseUrl = c.httpVersion === "2" ? nginx.h2cUrl : nginx.httpUrl;
        const name = `unbuffered ${c.name}`;
        const arrivals: Arrival[] = [];
        for await (const m of createClient(StreamService, c.transport(baseUrl)).stream({
          name,
          limit: 2n,
          interval: durationFromMs(500),
        })) {
          arrivals.push({ counter: m.counter, stampedAt: msOf(m.timestamp), receivedAt: Date.now() });
        }
        assertUnbuffered(arrivals, c.name);
        // gRPC went through grpc_pass (HTTP/2 to the instance), the rest through proxy_pass (HTTP/1.1).
        const start = JSON.parse(
          instances[await servedBy(name)]?.lines.find((l) => l.includes('"stream started"') && l.includes(name)) ?? "",
        );
        assert.equal(start.protocol, c.protocol);
        assert.equal(start.http, c.protocol === "grpc" ? "2.0" : "1.1");
      });
    }

    it("should pass gRPC from @grpc/grpc-js through", async () => {
      const client = grpcJsClient(nginx.h2cPort);
      const arrivals: Arrival[] = [];
      const call = grpcJsStream(client, { name: "unbuffered grpc-js", limit: 2n, interval: durationFromMs(500) });
      call.on("data", (m) =>
        arrivals.push({ counter: m.counter, stampedAt: msOf(m.timestamp), receivedAt: Date.now() }),
      );
      const { error } = await collect(call);
      client.close();
      assert.equal(error, undefined);
      assertUnbuffered(arrivals, "grpc-js");
    });

    it("should pass NDJSON to curl", async () => {
      const lines = await curlLines([`${nginx.httpUrl}/stream?name=ndjson&interval=0.5s&limit=2`]);
      const arrivals = lines.map(({ line, at }) => {
        const m = JSON.parse(line);
        return { counter: BigInt(m.counter ?? 0), stampedAt: Date.parse(m.timestamp), receivedAt: at };
      });
      assertUnbuffered(arrivals, "NDJSON");
    });

    it("should pass Server-Sent Events to curl, and Last-Event-ID to the instance", async () => {
      const sse = (lastEventId: string[]) =>
        curlLines([
          "-H",
          "Accept: text/event-stream",
          ...lastEventId,
          `${nginx.httpUrl}/stream?name=sse&interval=0.5s&limit=3`,
        ]);
      const arrivals = (await sse(["-H", "Last-Event-ID: 0"]))
        .filter(({ line }) => line.startsWith("data: "))
        .map(({ line, at }) => {
          const m = JSON.parse(line.slice("data: ".length));
          return { counter: BigInt(m.counter ?? 0) - 1n, stampedAt: Date.parse(m.timestamp), receivedAt: at };
        });
      // Resumed after event 0: events 1 and 2 (shifted to 0 and 1 for the check).
      assertUnbuffered(arrivals, "SSE");
    });
  });

  it("should spread streams over every instance", async () => {
    const open = [
      ...[0, 1, 2, 3, 4, 5].map((n) => endlessStream(grpcTransport(), `spread grpc ${n}`)),
      ...[0, 1, 2, 3, 4, 5].map((n) => endlessStream(connectTransport(), `spread connect ${n}`)),
    ];
    await Promise.all(open.map((s) => s.first));
    const grpcOwners = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => servedBy(`spread grpc ${n}`)));
    const connectOwners = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => servedBy(`spread connect ${n}`)));
    for (const s of open) s.cancel();
    for (const s of open) assert.equal((await s.ended)?.code, Code.Canceled);
    for (const [i] of instances.entries()) {
      assert.ok(grpcOwners.includes(i), `instance ${i} got a gRPC stream: ${grpcOwners}`);
      assert.ok(connectOwners.includes(i), `instance ${i} got a Connect stream: ${connectOwners}`);
    }
  });

  it("should send every new stream to the others once an instance is killed (SIGKILL)", async () => {
    const victim = instances[0] as ServerProc;
    const onVictim = endlessStream(connectTransport(), "killed connect");
    await onVictim.first;
    // Whichever instance took it, the victim is killed; the stream is cut only if it was there.
    const owner = await servedBy("killed connect");
    assert.equal(await stop(victim, "SIGKILL"), "SIGKILL");
    if (owner === 0)
      assert.ok((await onVictim.ended) instanceof ConnectError, "the stream on the killed instance broke");
    else onVictim.cancel();
    // Nothing tells nginx; the first stream sent to the dead instance is refused there and retried on another.
    const grpcOwners = await shortStreams(grpcTransport(), "after kill grpc", 6);
    const connectOwners = await shortStreams(connectTransport(), "after kill connect", 6);
    for (const owners of [grpcOwners, connectOwners]) {
      assert.ok(!owners.includes(0), `none on the killed instance: ${owners}`);
      assert.ok(owners.includes(1) && owners.includes(2), `both others take streams: ${owners}`);
    }
    await onVictim.ended;
  });

  it("should end streams on a draining instance with UNAVAILABLE and send new ones to the others (SIGTERM)", async () => {
    const draining = instances[1] as ServerProc;
    // least_conn: with one endless stream on each live instance, the next ones alternate; open until one lands on it.
    const open = [0, 1, 2, 3].map((n) => endlessStream(grpcTransport(), `drained grpc ${n}`));
    await Promise.all(open.map((s) => s.first));
    const owners = await Promise.all([0, 1, 2, 3].map((n) => servedBy(`drained grpc ${n}`)));
    assert.ok(owners.includes(1), `a stream on the instance that drains: ${owners}`);
    draining.child.kill("SIGTERM");
    assert.equal(await draining.exited, 0);
    for (const [n, s] of open.entries()) {
      if (owners[n] !== 1) continue;
      const error = await s.ended;
      assert.equal(error?.code, Code.Unavailable);
      assert.equal(error?.rawMessage, "server is shutting down");
    }
    const after = await shortStreams(grpcTransport(), "after drain grpc", 4);
    assert.deepEqual(after, [2, 2, 2, 2]);
    for (const s of open) s.cancel();
    await Promise.all(open.map((s) => s.ended));
  });
});

describe("nginx in front of an instance started with --trusted-proxy naming it", () => {
  let instance: ServerProc;
  let nginx: Nginx;

  before(async () => {
    // Two streams a client; nginx connects from 127.0.0.1 and forwards the
    // client's address in X-Forwarded-For, as the shipped site does.
    instance = await startServerProcess(["--max-streams-per-client", "2", "--trusted-proxy", "127.0.0.1"]);
    nginx = await startNginx([instance.port]);
  });

  after(async () => {
    await nginx?.stop();
    await stop(instance, "SIGKILL");
  });

  const opened: Array<{ destroy(): void }> = [];
  after(() => {
    for (const o of opened) o.destroy();
  });

  /** An endless NDJSON stream through nginx's HTTP/1.1 port from `localAddress`: its status. */
  const ndjson = (localAddress: string) =>
    new Promise<number>((resolve, reject) => {
      const req = http.get(`${nginx.httpUrl}/stream?interval=1h`, { localAddress, agent: false }, (res) => {
        opened.push(req);
        res.once("data", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
    });

  /** An endless gRPC stream through nginx's h2c port from `localAddress`: its grpc-status, "0" while it streams. */
  const grpc = (localAddress: string) =>
    new Promise<string>((resolve, reject) => {
      const session = http2.connect(nginx.h2cUrl, {
        createConnection: () => net.connect({ host: "127.0.0.1", port: nginx.h2cPort, localAddress }),
      });
      opened.push(session);
      session.on("error", reject);
      const req = session.request(grpcRequestHeaders());
      req.on("response", (h) => {
        if (h["grpc-status"] !== undefined) resolve(String(h["grpc-status"]));
      });
      req.on("trailers", (t) => resolve(String(t["grpc-status"])));
      req.once("data", () => resolve("0"));
      req.on("error", reject);
      req.end(requestEnvelope({ interval: { seconds: 3600n, nanos: 0 } }));
    });

  it("should count each client by its own address, over HTTP/1.1 and gRPC, however many share nginx", async () => {
    assert.equal(await ndjson("127.0.0.2"), 200);
    assert.equal(await grpc("127.0.0.2"), "0");
    assert.equal(await ndjson("127.0.0.2"), 429, "the first client's share is taken");
    assert.equal(await grpc("127.0.0.2"), String(Code.ResourceExhausted));
    // Another client behind the same nginx still gets in: without the flag,
    // every client would count as nginx's one address.
    assert.equal(await grpc("127.0.0.3"), "0");
    assert.equal(await ndjson("127.0.0.3"), 200);
  });
});
