import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { ConfigError, parseConfig } from "../src/config/config.js";
import { durationFromMs } from "../src/shared/duration.js";
import { startServer, type TestServer } from "./support/server.js";

// CORS over real sockets: what a browser on another origin would be told.

const allowed = "http://app.example:3000";
const other = "http://evil.example";
const rpcPath = "/stream.v1.StreamService/Stream";

function corsHeaders(headers: Headers): string[] {
  return [...headers.keys()].filter((k) => k.startsWith("access-control-"));
}

function preflight(url: string, origin: string, method: string, requestHeaders: string): Promise<Response> {
  return fetch(url, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, "access-control-request-headers": requestHeaders },
  });
}

describe("CORS", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ corsOrigins: [allowed] });
  });
  after(() => srv.close());

  describe("from an allowed origin", () => {
    it("should answer a Connect preflight with 204, the exact origin and Connect's methods and headers", async () => {
      const r = await preflight(`${srv.url}${rpcPath}`, allowed, "POST", "content-type,connect-protocol-version");
      assert.equal(r.status, 204);
      assert.equal(r.headers.get("access-control-allow-origin"), allowed);
      assert.match(r.headers.get("vary") ?? "", /Origin/);
      assert.deepEqual(r.headers.get("access-control-allow-methods")?.split(", "), ["POST", "GET"]);
      const allowHeaders = r.headers.get("access-control-allow-headers")?.toLowerCase().split(", ") ?? [];
      for (const h of [
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "last-event-id",
        "x-request-id",
        "authorization",
      ]) {
        assert.ok(allowHeaders.includes(h), `Access-Control-Allow-Headers lists ${h}`);
      }
      assert.equal(r.headers.get("access-control-max-age"), "7200");
    });

    it("should answer a preflight for GET /stream with Last-Event-ID", async () => {
      const r = await preflight(`${srv.url}/stream`, allowed, "GET", "last-event-id");
      assert.equal(r.status, 204);
      assert.equal(r.headers.get("access-control-allow-origin"), allowed);
    });

    it("should let a Connect and a gRPC-Web stream through with the origin and exposed headers", async () => {
      for (const transport of [
        createConnectTransport({ baseUrl: srv.url, httpVersion: "1.1" }),
        createGrpcWebTransport({ baseUrl: srv.url, httpVersion: "1.1" }),
      ]) {
        let response: Headers | undefined;
        const client = createClient(StreamService, transport);
        const got = [];
        for await (const m of client.stream(
          { name: "Cors", limit: 2n, interval: durationFromMs(0) },
          {
            headers: { origin: allowed },
            onHeader: (h) => {
              response = h;
            },
          },
        )) {
          got.push(m.counter);
        }
        assert.deepEqual(got, [0n, 1n]);
        assert.equal(response?.get("access-control-allow-origin"), allowed);
        const exposed = response?.get("access-control-expose-headers")?.toLowerCase().split(", ") ?? [];
        for (const h of ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"]) {
          assert.ok(exposed.includes(h), `Access-Control-Expose-Headers lists ${h}`);
        }
      }
    });

    it("should put the CORS headers on GET /stream, its errors, and over HTTP/2", async () => {
      const ok = await fetch(`${srv.url}/stream?limit=1`, { headers: { origin: allowed } });
      await ok.text();
      assert.equal(ok.headers.get("access-control-allow-origin"), allowed);
      assert.match(ok.headers.get("access-control-expose-headers") ?? "", /X-Request-Id/i);
      const bad = await fetch(`${srv.url}/stream?limit=x`, { headers: { origin: allowed } });
      assert.equal(bad.status, 400);
      await bad.text();
      assert.equal(bad.headers.get("access-control-allow-origin"), allowed);

      const session = http2.connect(srv.url);
      try {
        const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          const req = session.request({
            ":method": "OPTIONS",
            ":path": rpcPath,
            origin: allowed,
            "access-control-request-method": "POST",
          });
          req.on("response", (h) => {
            req.close();
            resolve(h);
          });
          req.on("error", reject);
          req.end();
        });
        assert.equal(headers[":status"], 204);
        assert.equal(headers["access-control-allow-origin"], allowed);
      } finally {
        session.close();
      }
    });
  });

  describe("from an origin not in the list", () => {
    it("should give a preflight no CORS headers", async () => {
      const r = await preflight(`${srv.url}${rpcPath}`, other, "POST", "content-type");
      await r.text();
      assert.deepEqual(corsHeaders(r.headers), []);
    });

    it("should serve GET /stream without CORS headers (the browser then hides it)", async () => {
      const r = await fetch(`${srv.url}/stream?limit=1`, { headers: { origin: other } });
      assert.equal(r.status, 200);
      await r.text();
      assert.deepEqual(corsHeaders(r.headers), []);
    });
  });

  it("should allow no origin by default", async () => {
    const plain = await startServer();
    try {
      const r = await preflight(`${plain.url}${rpcPath}`, allowed, "POST", "content-type");
      await r.text();
      assert.deepEqual(corsHeaders(r.headers), []);
    } finally {
      await plain.close();
    }
  });
});

describe("CORS and heartbeat configuration", () => {
  it("should take repeated --cors-origin flags, each possibly comma-separated", () => {
    const c = parseConfig(["--cors-origin", "https://a.example", "--cors-origin", "http://b.example:8080,*"], {});
    assert.deepEqual(c.corsOrigins, ["https://a.example", "http://b.example:8080", "*"]);
  });

  it("should take CORS_ORIGINS from the environment, the flag winning", () => {
    assert.deepEqual(parseConfig([], { CORS_ORIGINS: "https://a.example, https://b.example" }).corsOrigins, [
      "https://a.example",
      "https://b.example",
    ]);
    assert.deepEqual(
      parseConfig(["--cors-origin", "https://c.example"], { CORS_ORIGINS: "https://a.example" }).corsOrigins,
      ["https://c.example"],
    );
  });

  it("should default to no origins and a 15s heartbeat", () => {
    const c = parseConfig([], {});
    assert.deepEqual(c.corsOrigins, []);
    assert.equal(c.heartbeatMs, 15_000);
    assert.equal(parseConfig(["--heartbeat", "250ms"], {}).heartbeatMs, 250);
  });

  for (const bad of ["example.com", "https://a.example/", "https://a.example/path", "ftp://a.example"]) {
    it(`should refuse ${JSON.stringify(bad)}, which no browser sends as an Origin`, () => {
      assert.throws(() => parseConfig(["--cors-origin", bad], {}), ConfigError);
    });
  }

  it("should refuse a zero heartbeat", () => {
    assert.throws(() => parseConfig(["--heartbeat", "0s"], {}), ConfigError);
  });
});
