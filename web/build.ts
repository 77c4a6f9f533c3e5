import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";

// Bundles the page with esbuild into web/dist/ (served by src/entries/static-page/):
// app.js from main.ts with everything it imports (the client package among them), so the page needs no CDN
// and works offline. Runs from "prestart" (npm start), from the browser test,
// and from `npm run build` into dist/web/dist/. Not from "prepare": a
// production install (`npm ci --omit=dev`) has no esbuild and builds nothing.

const webDir = fileURLToPath(new URL(".", import.meta.url));

/** Builds the page into `outdir` (default web/dist/). */
export async function buildWeb(outdir = `${webDir}dist`): Promise<void> {
  const esbuild = await import("esbuild");
  await mkdir(outdir, { recursive: true });
  await esbuild.build({
    entryPoints: [`${webDir}main.ts`],
    outfile: `${outdir}/app.js`,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    logLevel: "warning",
  });
  await Promise.all(["index.html", "style.css"].map((f) => copyFile(`${webDir}${f}`, `${outdir}/${f}`)));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await buildWeb();
}
