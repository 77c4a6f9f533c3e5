import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { clientCases } from "./support/clients.js";
import { eventually, startServer, type TestServer } from "./support/server.js";

// @grpc/grpc-js with the .proto loaded at run time by @grpc/proto-loader: a
// client that shares no code with the server, as a load balancer's would.
interface GrpcJsHealth extends grpc.Client {
  Check(
    req: { service: string },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
  ): grpc.ClientUnaryCall;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

function grpcJsHealth(port: number): GrpcJsHealth {
  const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: ["proto"], enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (address: string, creds: grpc.ChannelCredentials) => GrpcJsHealth } } };
  };
  return new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function grpcJsCheck(client: GrpcJsHealth, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + 5000 }, (err, res) =>
      err ? reject(err) : resolve(res?.status ?? ""),
    );
  });
}

/** GET (or `method`) over a connection that closes after the response, so shutdown has no idle keep-alive socket to wait for. */
async function getStatus(url: string, method = "GET"): Promise<number> {
  return (await request1(url, method)).status;
}

function request1(url: string, method: string): Promise<{ status: number; allow: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .request(url, { method, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, allow: res.headers.allow, body }));
      })
      .on("error", reject)
      .end();
  });
}

function request2(url: string, path: string, method: string): Promise<{ status: number; allow: unknown }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":method": method, ":path": path });
    req.on("response", (headers) => {
      resolve({ status: Number(headers[":status"]), allow: headers.allow });
      session.close();
    });
    req.on("error", reject);
    req.resume();
    req.end();
  });
}

/** The messages of a grpc-js server stream and how it ended. */
function collect(call: grpc.ClientReadableStream<{ status: string }>) {
  const got: string[] = [];
  call.on("data", (m: { status: string }) => got.push(m.status));
  const ended = new Promise<grpc.StatusObject>((resolve) => {
    call.on("error", () => {});
    call.on("status", resolve);
  });
  return { got, ended };
}

describe("grpc.health.v1.Health", () => {
  let srv: TestServer;

  describe("while the server is up", () => {
    before(async () => {
      srv = await startServer();
    });
    after(() => srv.close());

    for (const c of clientCases) {
      it(`should answer Check SERVING for the server and for stream.v1.StreamService over ${c.name}`, async () => {
        const client = createClient(Health, c.transport(srv.url));
        assert.equal((await client.check({ service: "" })).status, Status.SERVING);
        assert.equal((await client.check({ service: "stream.v1.StreamService" })).status, Status.SERVING);
      });
    }

    it("should answer Check NOT_FOUND for a service it does not know", async () => {
      const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
      await assert.rejects(client.check({ service: "no.such.Service" }), (e: unknown) => {
        assert.equal(ConnectError.from(e).code, Code.NotFound);
        return true;
      });
    });

    it("should list the server and the stream service as SERVING", async () => {
      const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
      const res = await client.list({});
      assert.deepEqual(
        Object.entries(res.statuses).map(([name, s]) => [name, s.status]),
        [
          ["", Status.SERVING],
          ["stream.v1.StreamService", Status.SERVING],
        ],
      );
    });

    it("should answer @grpc/grpc-js Check, and NOT_FOUND for an unknown service", async () => {
      const client = grpcJsHealth(srv.port);
      try {
        assert.equal(await grpcJsCheck(client, ""), "SERVING");
        assert.equal(await grpcJsCheck(client, "stream.v1.StreamService"), "SERVING");
        await assert.rejects(grpcJsCheck(client, "nope"), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
      } finally {
        client.close();
      }
    });

    it("should Watch an unknown service as SERVICE_UNKNOWN and keep the call open until the client cancels", async () => {
      const client = grpcJsHealth(srv.port);
      try {
        const call = client.Watch({ service: "not.yet.Known" });
        const { got, ended } = collect(call);
        await eventually(() => got.length === 1, 5000, "the first Watch message");
        assert.deepEqual(got, ["SERVICE_UNKNOWN"]);
        assert.equal(srv.server.health.watcherCount, 1);
        call.cancel();
        assert.equal((await ended).code, grpc.status.CANCELLED);
        await eventually(() => srv.server.health.watcherCount === 0, 5000, "the watcher to go");
      } finally {
        client.close();
      }
    });

    it("should end a connect-node Watch that the client cancels without leaving a listener", async () => {
      const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
      const abort = new AbortController();
      const seen: Status[] = [];
      await assert.rejects(
        (async () => {
          for await (const m of client.watch({ service: "" }, { signal: abort.signal })) {
            seen.push(m.status);
            abort.abort();
          }
        })(),
        (e: unknown) => ConnectError.from(e).code === Code.Canceled,
      );
      assert.deepEqual(seen, [Status.SERVING]);
      await eventually(() => srv.server.health.watcherCount === 0, 5000, "the watcher to go");
    });

    it("should answer GET /healthz and GET /readyz with 200", async () => {
      assert.equal(await getStatus(`${srv.url}/healthz`), 200);
      assert.equal(await getStatus(`${srv.url}/readyz`), 200);
    });

    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      it(`should answer HEAD ${path} with 200, and other methods with 405 and Allow, over HTTP/1.1 and HTTP/2`, async () => {
        assert.equal(await getStatus(`${srv.url}${path}`, "HEAD"), 200);
        for (const method of ["TRACE", "POST", "DELETE"]) {
          const h1 = await request1(`${srv.url}${path}`, method);
          assert.equal(h1.status, 405, `${method} ${path}`);
          assert.equal(h1.allow, "GET, HEAD");
          assert.equal(JSON.parse(h1.body).code, "unimplemented");
        }
        const h2 = await request2(srv.url, path, "TRACE");
        assert.equal(h2.status, 405);
        assert.equal(h2.allow, "GET, HEAD");
      });
    }
  });

  describe("when shutdown starts", () => {
    beforeEach(async () => {
      srv = await startServer();
    });
    afterEach(() => srv.close());

    it("should send NOT_SERVING to an open Watch, then end it with UNAVAILABLE and leave no watcher", async () => {
      const client = grpcJsHealth(srv.port);
      try {
        const { got, ended } = collect(client.Watch({ service: "stream.v1.StreamService" }));
        await eventually(() => got.length === 1, 5000, "the first Watch message");
        assert.deepEqual(got, ["SERVING"]);
        const clean = srv.server.shutdown();
        assert.equal(srv.server.health.draining, true, "draining starts synchronously");
        const status = await ended;
        assert.deepEqual(got, ["SERVING", "NOT_SERVING"]);
        assert.equal(status.code, grpc.status.UNAVAILABLE);
        assert.equal(srv.server.health.watcherCount, 0);
        assert.equal(await clean, true, "nothing had to be cut at the grace deadline");
      } finally {
        client.close();
      }
    });

    it("should answer Check NOT_SERVING and GET /readyz 503 while draining, and /healthz still 200", async () => {
      // What shutdown's onDraining does first; the listener is still accepting here, so the probes get through.
      srv.server.health.drain();
      const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
      assert.equal((await client.check({ service: "" })).status, Status.NOT_SERVING);
      assert.equal((await client.check({ service: "stream.v1.StreamService" })).status, Status.NOT_SERVING);
      assert.equal(await getStatus(`${srv.url}/readyz`), 503);
      assert.equal(await getStatus(`${srv.url}/healthz`), 200);
    });
  });
});
