import assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { after, describe, it } from "node:test";
import { clientKey } from "../src/door/client-address.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// One client cannot take every slot. Streams and connections are counted per
// client address (loopback has a whole /8 of them: 127.0.0.2 and 127.0.0.3
// are two clients here), and behind a trusted proxy per the address the
// proxy forwards; one address that holds its share is refused while the
// others still get in.

interface Opened {
  status: number;
  body: string;
  req: http.ClientRequest;
}

/** GET /stream from `localAddress`; resolves once the status and the first chunk (or the whole error) are in. */
function openStream(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/stream?interval=1h`, { localAddress, headers, agent: false }, (res) => {
      res.setEncoding("utf8");
      res.once("data", (chunk: string) => resolve({ status: res.statusCode ?? 0, body: chunk, req }));
    });
    req.on("error", reject);
  });
}

describe("limits per client", () => {
  const servers: TestServer[] = [];
  const opened: http.ClientRequest[] = [];
  after(async () => {
    for (const r of opened) r.destroy();
    await Promise.all(servers.map((s) => s.close()));
  });

  it("should refuse a client's streams past --max-streams-per-client with 429, and still serve another client", async () => {
    const srv = await startServer({ maxStreamsPerClient: 2 });
    servers.push(srv);
    for (let i = 0; i < 2; i++) {
      const s = await openStream(srv.url, "127.0.0.2");
      opened.push(s.req);
      assert.equal(s.status, 200);
    }
    const refused = await openStream(srv.url, "127.0.0.2");
    assert.equal(refused.status, 429);
    assert.match(refused.body, /too many open streams from this address/);
    const other = await openStream(srv.url, "127.0.0.3");
    opened.push(other.req);
    assert.equal(other.status, 200);
  });

  it("should close a client's connections past --max-connections-per-client at once, and accept another client's", async () => {
    const srv = await startServer({ maxConnectionsPerClient: 2 });
    servers.push(srv);
    const connect = (localAddress: string) =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ port: srv.port, host: "127.0.0.1", localAddress });
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      });
    const held = [await connect("127.0.0.2"), await connect("127.0.0.2")];
    await eventually(() => srv.listener.sockets.size === 2, 2000, "two connections held");
    const third = await connect("127.0.0.2");
    const closed = new Promise<void>((resolve) => third.once("close", () => resolve()));
    third.on("error", () => {});
    await closed;
    const other = await connect("127.0.0.3");
    await eventually(() => srv.listener.sockets.size === 3, 2000, "another client's connection held");
    for (const s of [...held, other]) s.destroy();
    assert.ok(srv.logs.some((l) => l.msg === "connections refused: --max-connections-per-client reached"));
  });

  it("should count a trusted proxy's requests by the address it forwards, and an untrusted peer's by its own", async () => {
    const srv = await startServer({ maxStreamsPerClient: 1, trustedProxies: ["127.0.0.4"] });
    servers.push(srv);
    const viaProxy = (client: string) =>
      openStream(srv.url, "127.0.0.4", { "x-forwarded-for": `${client}, 127.0.0.4` });
    const first = await viaProxy("10.0.0.1");
    opened.push(first.req);
    assert.equal(first.status, 200);
    assert.equal((await viaProxy("10.0.0.1")).status, 429, "the same forwarded client, its share taken");
    const second = await viaProxy("10.0.0.2");
    opened.push(second.req);
    assert.equal(second.status, 200, "another forwarded client");
    // A peer that is no trusted proxy cannot pick the address it is counted by.
    const direct = await openStream(srv.url, "127.0.0.5", { "x-forwarded-for": "10.0.0.3" });
    opened.push(direct.req);
    assert.equal(direct.status, 200);
    assert.equal((await openStream(srv.url, "127.0.0.5", { "x-forwarded-for": "10.0.0.4" })).status, 429);
  });

  it("should count an IPv6 client by its /64, and an IPv4-mapped one as IPv4", () => {
    assert.equal(clientKey("2001:db8:1:2:aaaa::1"), clientKey("2001:db8:1:2:bbbb::9"));
    assert.notEqual(clientKey("2001:db8:1:2::1"), clientKey("2001:db8:1:3::1"));
    assert.equal(clientKey("::ffff:10.0.0.7"), "10.0.0.7");
    assert.equal(clientKey("10.0.0.7"), "10.0.0.7");
  });
});
