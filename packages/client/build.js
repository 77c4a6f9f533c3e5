// `npm pack` runs this (prepack): dist/ from src/ with tsc (ESM and .d.ts),
// and proto/ with the stream.proto that src/gen/ was generated from, so the
// tarball carries its own contract (`buf curl --schema`, other languages).
// Plain JavaScript, so packing needs nothing but Node and the repository's
// TypeScript.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";

const here = new URL(".", import.meta.url);
for (const dir of ["dist", "proto"]) rmSync(new URL(dir, here), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", new URL("tsconfig.build.json", here).pathname], { stdio: "inherit" });
cpSync(new URL("../../proto/stream/v1/stream.proto", here), new URL("proto/stream/v1/stream.proto", here));
