import { execFileSync } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildWeb } from "../web/build.js";

// `npm run build`: the production layout, run as `node dist/main.js` with
// production dependencies only. dist/ mirrors the repository (dist/src,
// dist/gen, dist/web/dist) so that the relative imports (../gen/...) and
// static-page.ts's ../web/dist/ resolve in dist/ exactly as in the source
// tree: nothing is rewritten, and moving files inside src/ needs no change here.

const root = fileURLToPath(new URL("..", import.meta.url));

// A file of its own rather than dist/src/main.js: source maps must be on
// before the compiled modules load, and the command stays short.
const entry = `// Written by scripts/build.ts: the production entry, \`node dist/main.js\`.
// Source maps on before any compiled module loads, so stack traces name src/*.ts lines.
process.setSourceMapsEnabled(true);
await import("./src/main.js");
`;

/** Compiles src/ and gen/ (tsconfig.build.json) and bundles the web page into `outDir`, emptied first. */
export async function build(outDir = `${root}dist`): Promise<void> {
  const out = resolve(outDir);
  await rm(out, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", `${root}tsconfig.build.json`, "--outDir", out], { stdio: "inherit" });
  await buildWeb(`${out}/web/dist`);
  await writeFile(`${out}/main.js`, entry);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await build(process.argv[2]);
}
