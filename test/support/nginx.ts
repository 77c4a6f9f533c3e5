import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { type Proc, startCommand, stop } from "./process.js";

// Debian's nginx in front of our instances, run by any user: its own prefix,
// pid file, temp paths and logs in a temporary directory, in the foreground,
// started and ended by PID. The site is deploy/nginx/stream-service.conf as
// shipped, with only its listen ports and upstream servers replaced.

const root = new URL("../..", import.meta.url).pathname;
export const shippedConfig = `${root}deploy/nginx/stream-service.conf`;
const nginxBin = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";

/** The lines renderSite() may change: everything else must stay as shipped. */
export const templated = /^\s*(listen \S+( http2)?;|server 127\.0\.0\.1:\d+ .*;)/;

/**
 * The shipped site with nginx on `httpPort` (HTTP/1.1) and `h2cPort` (h2c),
 * and each upstream listing `instances` with the parameters the shipped
 * server lines have. Throws when the shipped file no longer has that shape.
 */
export function renderSite(shipped: string, httpPort: number, h2cPort: number, instances: number[]): string {
  const out: string[] = [];
  let listens = 0;
  let upstreams = 0;
  let inUpstream = false;
  let serverParams: string | undefined;
  for (const line of shipped.split("\n")) {
    if (/^upstream \S+ \{$/.test(line)) {
      inUpstream = true;
      serverParams = undefined;
      upstreams++;
    } else if (inUpstream && line === "}") {
      inUpstream = false;
      if (serverParams === undefined) throw new Error("an upstream without server lines");
    }
    const listen = /^(\s*)listen (8080|8081 http2);(.*)$/.exec(line);
    if (listen) {
      listens++;
      const port = listen[2] === "8080" ? String(httpPort) : `${h2cPort} http2`;
      out.push(`${listen[1]}listen 127.0.0.1:${port};${listen[3]}`);
      continue;
    }
    const server = /^(\s*)server 127\.0\.0\.1:\d+ (.*);$/.exec(line);
    if (inUpstream && server) {
      if (serverParams === undefined) {
        serverParams = server[2] as string;
        for (const port of instances) out.push(`${server[1]}server 127.0.0.1:${port} ${serverParams};`);
      } else if (server[2] !== serverParams) {
        throw new Error(`upstream servers with different parameters: ${line}`);
      }
      continue;
    }
    out.push(line);
  }
  if (listens !== 2 || upstreams !== 2) {
    throw new Error(`expected 2 listen lines and 2 upstreams in ${shippedConfig}, found ${listens} and ${upstreams}`);
  }
  return out.join("\n");
}

export interface Nginx {
  readonly proc: Proc;
  /** HTTP/1.1 front door. */
  readonly httpUrl: string;
  /** HTTP/2 with prior knowledge. */
  readonly h2cUrl: string;
  readonly h2cPort: number;
  /** The access log so far: one line per request, "$msec $status $request_time up=$upstream_addr ups=$upstream_status $request". */
  accessLog(): Promise<string>;
  /** Ends nginx by its PID (fast shutdown: open streams are cut) and removes its directory. */
  stop(): Promise<void>;
}

/** Starts nginx with the shipped site in front of `instances` (ports on 127.0.0.1). */
export async function startNginx(instances: number[]): Promise<Nginx> {
  const dir = await mkdtemp(`${tmpdir()}/stream-service-nginx-`);
  // Run as root, nginx's workers become "nobody" and must reach the temp paths.
  await chmod(dir, 0o755);
  const [httpPort, h2cPort] = [await freePort(), await freePort()];
  const site = renderSite(await readFile(shippedConfig, "utf8"), httpPort, h2cPort, instances);
  await writeFile(`${dir}/stream-service.conf`, site);
  await writeFile(
    `${dir}/nginx.conf`,
    `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    # Which instance answered, with what, after how many tries: what a failing test needs to know.
    log_format upstreams '$msec $status $request_time up=$upstream_addr ups=$upstream_status "$request"';
    access_log ${dir}/access.log upstreams;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/stream-service.conf;
}
`,
  );
  // -e: the log for errors before the configuration is read (Debian's default is under /var/log).
  const proc = startCommand(nginxBin, ["-p", `${dir}/`, "-c", `${dir}/nginx.conf`, "-e", "stderr"]);
  // The master binds the ports before it starts workers; connections wait in the backlog until then.
  await proc.waitUntil(() => proc.stderr().includes("start worker process"), 10_000);
  return {
    proc,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    h2cUrl: `http://127.0.0.1:${h2cPort}`,
    h2cPort,
    accessLog: () => readFile(`${dir}/access.log`, "utf8").catch(() => ""),
    async stop() {
      await stop(proc, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A port free right now: nginx cannot bind port 0 and report it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
