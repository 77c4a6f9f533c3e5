import { mkdir, rm } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { build as bundle } from "esbuild";
import { build as buildServer } from "../scripts/build.js";

// Every process the benchmark measures runs as compiled JavaScript, as users
// run the service in production (`node dist/main.js`): a server loaded
// through tsx keeps its loader, source and maps in memory, and read 13.4 KiB
// an idle stream where the production build reads 10.9. Ours is built as
// `npm run build` builds it; grpc-js's and the raw server, the load client
// and the orphan guard are bundled by esbuild with their packages left to
// node_modules. All of it goes to bench/.build/, inside the repository so
// that node_modules resolves, and is rebuilt at every run.

const root = fileURLToPath(new URL("..", import.meta.url));
export const buildDir = path.join(root, "bench/.build");

export interface ProductionBuild {
  /** `node <this>`: our server, as `node dist/main.js`. */
  ours: string;
  /** The compiled form of one of bench/'s scripts ("grpc-js-server", ...). */
  script(name: string): string;
}

export async function productionBuild(): Promise<ProductionBuild> {
  await rm(buildDir, { recursive: true, force: true });
  await mkdir(buildDir, { recursive: true });
  await buildServer(path.join(buildDir, "dist"));
  const scripts = ["grpc-js-server", "raw-http2-server", "load-client", "orphan-guard"];
  await bundle({
    entryPoints: scripts.map((s) => path.join(root, `bench/${s}.ts`)),
    outdir: path.join(buildDir, "bench"),
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
  });
  return {
    ours: path.join(buildDir, "dist/main.js"),
    script: (name) => path.join(buildDir, "bench", `${name}.mjs`),
  };
}
