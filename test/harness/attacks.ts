import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { envelope, grpcRequestHeaders, requestEnvelope, streamPath } from "../support/wire.js";
import type { Random } from "./random.js";

// The catalogue of attack classes the harness mixes, each as a generator: a
// plan (plain parameters, printed on failure so a step replays) drawn from the
// seeded source, and a runner bounded in count and time that resolves once
// the attacker has left. Refusals (RESOURCE_EXHAUSTED, 429, closed
// connections) are counted, not failures: the harness holds the server to
// its bounds, not the attack to success.

export interface Plan {
  kind: string;
  [param: string]: string | number;
}

export interface AttackResult {
  refusals: number;
}

// An empty StreamRequest in one gRPC envelope: the default interval (2 s).
const emptyGrpcMessage = requestEnvelope({});
const grpcHeaders = grpcRequestHeaders();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function session(url: string, settings: http2.Settings = {}): http2.ClientHttp2Session {
  const s = http2.connect(url, { settings });
  s.on("error", () => {});
  return s;
}

function closed(s: http2.ClientHttp2Session): Promise<void> {
  return new Promise((r) => {
    if (s.destroyed) return r();
    s.once("close", () => r());
    s.destroy();
  });
}

/** Opens a gRPC stream; `onHeaders` sees the response headers; counts refusals. */
function grpcStream(
  s: http2.ClientHttp2Session,
  result: AttackResult,
  onHeaders?: (req: http2.ClientHttp2Stream) => void,
): http2.ClientHttp2Stream | undefined {
  let req: http2.ClientHttp2Stream;
  try {
    req = s.request(grpcHeaders);
  } catch {
    // The server closed the session (GOAWAY): a refusal, not the attacker's failure.
    result.refusals++;
    return undefined;
  }
  req.on("error", () => {});
  req.on("response", (h) => {
    const status = h["grpc-status"];
    if (status !== undefined && status !== "0") result.refusals++;
    onHeaders?.(req);
  });
  req.resume();
  req.end(emptyGrpcMessage);
  return req;
}

export const generators: Record<string, (rnd: Random) => Plan> = {
  rapidReset: (r) => ({
    kind: "rapidReset",
    connections: r.int(1, 10),
    pairs: r.int(100, 1500),
    holdMs: r.int(0, 500),
  }),
  cancelOnHeaders: (r) => ({ kind: "cancelOnHeaders", bursts: r.int(1, 5), streams: r.int(10, 100) }),
  zeroWindow: (r) => ({ kind: "zeroWindow", sessions: r.int(1, 4), streams: r.int(50, 300), holdMs: r.int(200, 1500) }),
  churn: (r) => ({ kind: "churn", perSecond: r.int(50, 200), seconds: r.int(1, 3), minMs: 50, maxMs: 300 }),
  stalledH1: (r) => ({ kind: "stalledH1", readers: r.int(20, 300), holdMs: r.int(200, 2000) }),
  massTeardown: (r) => ({
    kind: "massTeardown",
    sessions: r.int(1, 4),
    streams: r.int(100, 800),
    holdMs: r.int(100, 1000),
  }),
  flood: (r) => ({ kind: "flood", sessions: r.int(1, 5), streams: r.int(200, 2000) }),
  slowPeers: (r) => ({
    kind: "slowPeers",
    sockets: r.int(20, 300),
    // What each sends: nothing, half an HTTP/2 preface, or an HTTP/1.1 head a header every 100 ms.
    mode: r.pick(["silent", "half-preface", "slow-headers"]),
    holdMs: r.int(300, 2500),
  }),
};

export const kinds = Object.keys(generators);

export async function runAttack(url: string, plan: Plan, rnd: Random): Promise<AttackResult> {
  const result: AttackResult = { refusals: 0 };
  const n = (k: string) => Number(plan[k]);
  switch (plan.kind) {
    case "rapidReset": {
      const sessions = Array.from({ length: n("connections") }, () => session(url));
      for (const s of sessions) {
        for (let i = 0; i < n("pairs") && !s.destroyed && !s.closed; i++) {
          const req = grpcStream(s, result);
          req?.close(http2.constants.NGHTTP2_CANCEL);
          if (i % 200 === 199) await sleep(0);
        }
      }
      await sleep(n("holdMs"));
      await Promise.all(sessions.map(closed));
      break;
    }
    case "cancelOnHeaders": {
      const s = session(url);
      for (let b = 0; b < n("bursts"); b++) {
        await Promise.all(
          Array.from(
            { length: n("streams") },
            () =>
              new Promise<void>((done) => {
                const req = grpcStream(s, result, (q) => q.close(http2.constants.NGHTTP2_CANCEL));
                if (req === undefined) return done();
                req.on("close", () => done());
                setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 3000).unref();
              }),
          ),
        );
      }
      await closed(s);
      break;
    }
    case "zeroWindow":
    case "massTeardown": {
      const settings = plan.kind === "zeroWindow" ? { initialWindowSize: 0 } : {};
      const sessions = Array.from({ length: n("sessions") }, () => session(url, settings));
      for (const s of sessions) for (let i = 0; i < n("streams"); i++) grpcStream(s, result);
      await sleep(n("holdMs"));
      await Promise.all(sessions.map(closed));
      break;
    }
    case "flood": {
      const sessions = Array.from({ length: n("sessions") }, () => session(url));
      const reqs = sessions.flatMap((s) => Array.from({ length: n("streams") }, () => grpcStream(s, result)));
      await sleep(rnd.int(100, 800));
      for (const q of reqs) q?.close(http2.constants.NGHTTP2_CANCEL);
      await Promise.all(sessions.map(closed));
      break;
    }
    case "stalledH1": {
      const port = new URL(url).port;
      const sockets = Array.from({ length: n("readers") }, () => {
        const sock = net.connect(Number(port), "127.0.0.1");
        sock.on("error", () => {});
        sock.write(`GET /stream?interval=0s HTTP/1.1\r\nHost: x\r\n\r\n`);
        sock.pause();
        return sock;
      });
      await sleep(n("holdMs"));
      for (const s of sockets) s.destroy();
      break;
    }
    case "slowPeers": {
      const port = Number(new URL(url).port);
      const sockets = Array.from({ length: n("sockets") }, () => {
        const sock = net.connect(port, "127.0.0.1");
        sock.on("error", () => {});
        if (plan.mode === "half-preface") sock.write("PRI * HTTP/2.0\r\n");
        if (plan.mode === "slow-headers") sock.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
        return sock;
      });
      const dripping =
        plan.mode === "slow-headers"
          ? setInterval(() => {
              for (const s of sockets) if (s.writable) s.write("X-Drip: 1\r\n");
            }, 100)
          : undefined;
      await sleep(n("holdMs"));
      clearInterval(dripping);
      for (const s of sockets) s.destroy();
      break;
    }
    case "churn": {
      const s = session(url);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
      const total = n("perSecond") * n("seconds");
      const pending: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        const life = rnd.int(n("minMs"), n("maxMs"));
        const protocol = rnd.pick(["grpc", "connect", "ndjson"] as const);
        pending.push(
          new Promise<void>((done) => {
            if (protocol === "grpc") {
              const req = grpcStream(s, result);
              if (req === undefined) return done();
              req.on("close", () => done());
              setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), life);
              return;
            }
            const req =
              protocol === "ndjson"
                ? http.get(`${url}/stream?name=churn&interval=0.05s`, { agent })
                : http.request(`${url}${streamPath}`, {
                    agent,
                    method: "POST",
                    headers: { "content-type": "application/connect+json" },
                  });
            req.on("response", (res) => {
              if (res.statusCode !== 200) result.refusals++;
              res.resume();
            });
            req.on("error", () => {});
            req.on("close", () => done());
            if (protocol === "connect") {
              req.end(envelope(Buffer.from('{"interval":"0.05s"}')));
            }
            setTimeout(() => req.destroy(), life);
          }),
        );
        await sleep(1000 / n("perSecond"));
      }
      await Promise.all(pending);
      agent.destroy();
      await closed(s);
      break;
    }
    default:
      throw new Error(`no attack ${plan.kind}`);
  }
  return result;
}
