import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";

// Bundles the page with esbuild into web/dist/ (served by src/static-page.ts):
// app.js from main.ts with everything it imports, so the page needs no CDN
// and works offline. Runs from "prepare" (npm install / npm ci) and
// "prestart", and from the browser test.

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
  try {
    await buildWeb();
  } catch (e) {
    // `npm ci --omit=dev` runs "prepare" without esbuild: install what there is, without the page.
    if ((e as { code?: string }).code === "ERR_MODULE_NOT_FOUND") {
      process.stderr.write("build:web: esbuild is not installed, web/dist/ not built\n");
    } else {
      throw e;
    }
  }
}
