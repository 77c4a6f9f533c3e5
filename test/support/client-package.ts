import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";

// The client package as a user gets it: `npm pack` in packages/client, then a
// project of its own (outside the repository) that installs the tarball and
// the peers it declares, offline, from the npm cache that `npm ci` filled.
//
// Why a lockfile: npm resolves a name and a range against the registry's
// metadata of the package, which `npm ci` does not keep in the cache (it
// installs from the lockfile, by integrity). So `npm install --offline` of a
// bare package.json fails with ENOTCACHED on a machine that only ran `npm ci`.
// The consumer's lockfile, written from the repository's, pins the very
// tarballs the repository tested, and `npm ci --offline` then needs nothing
// but the cache: the same install a user makes, minus the metadata look-up.

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
export const packageDir = `${root}packages/client`;

interface LockEntry {
  /** Set on an alias: the real package's name. */
  name?: string;
  version: string;
  integrity?: string;
  resolved?: string;
  dev?: boolean;
  dependencies?: Record<string, string>;
  [field: string]: unknown;
}

const repoLock: { packages: Record<string, LockEntry> } = JSON.parse(readFileSync(`${root}package-lock.json`, "utf8"));
const repoManifest = JSON.parse(readFileSync(`${root}package.json`, "utf8"));

/** The version the repository pins for `name` (package.json), which its lockfile holds. */
export function pinned(name: string): string {
  const version = repoManifest.dependencies[name] ?? repoManifest.devDependencies[name];
  assert.ok(version, `${name} is not a dependency of the repository`);
  return version;
}

/** The version behind an alias of the repository's package.json ("npm:@bufbuild/protobuf@2.17.0" gives 2.17.0). */
export function aliased(alias: string): string {
  const spec: string = repoManifest.devDependencies[alias] ?? "";
  const version = /^npm:.+@(\d[^@]*)$/.exec(spec)?.[1];
  assert.ok(version, `${alias} is not an npm: alias in the repository's package.json`);
  return version;
}

export interface PackedTarball {
  /** Absolute path of the .tgz. */
  path: string;
  filename: string;
  integrity: string;
  /** The package.json inside it. */
  manifest: { name: string; version: string; [field: string]: unknown };
  /** Paths inside the tarball. */
  files: string[];
}

/** `npm pack` of packages/client (its prepack builds dist/ and proto/) into `destination`. */
export async function packClient(destination: string): Promise<PackedTarball> {
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", destination], {
    cwd: packageDir,
    timeout: 120_000,
  });
  const [info] = JSON.parse(stdout.slice(stdout.indexOf("[")));
  return {
    path: `${destination}/${info.filename}`,
    filename: info.filename,
    integrity: info.integrity,
    manifest: JSON.parse(readFileSync(`${packageDir}/package.json`, "utf8")),
    files: info.files.map((f: { path: string }) => f.path),
  };
}

export interface ConsumerDependencies {
  /** name -> version, each one the repository's lockfile holds. */
  dependencies: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/**
 * Writes package.json and package-lock.json of a consumer project in `dir`,
 * with the tarball (copied beside them) and `deps`, then `npm ci --offline`.
 */
export async function installConsumer(dir: string, tarball: PackedTarball, deps: ConsumerDependencies): Promise<void> {
  const own = tarball.manifest;
  const spec = `file:${tarball.filename}`;
  const manifest = {
    name: "stream-client-consumer",
    version: "1.0.0",
    private: true,
    type: "module",
    dependencies: { [own.name]: spec, ...deps.dependencies },
    devDependencies: deps.devDependencies ?? {},
  };
  const packages: Record<string, unknown> = {
    "": { name: manifest.name, version: manifest.version, ...pick(manifest, "dependencies", "devDependencies") },
    [`node_modules/${own.name}`]: {
      version: own.version,
      resolved: spec,
      integrity: tarball.integrity,
      ...pick(own, "license", "engines", "peerDependencies", "peerDependenciesMeta"),
    },
  };
  const add = (name: string, wanted: string | undefined, dev: boolean) => {
    const key = `node_modules/${name}`;
    if (packages[key] !== undefined) return;
    const entry = lockEntry(name, wanted);
    const { dev: _, name: _alias, ...rest } = entry;
    packages[key] = dev ? { ...rest, dev: true } : rest;
    for (const dep of Object.keys(entry.dependencies ?? {})) add(dep, undefined, dev);
  };
  for (const [name, version] of Object.entries(deps.dependencies)) add(name, version, false);
  for (const [name, version] of Object.entries(deps.devDependencies ?? {})) add(name, version, true);
  const lock = { name: manifest.name, version: manifest.version, lockfileVersion: 3, requires: true, packages };
  await writeFile(`${dir}/package.json`, `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(`${dir}/package-lock.json`, `${JSON.stringify(lock, null, 2)}\n`);
  await run("npm", ["ci", "--offline", "--no-audit", "--no-fund"], { cwd: dir, timeout: 120_000 });
}

/**
 * The repository's lockfile entry of `name` at `version` (default: the one at
 * the top): the package itself, or an alias of it such as
 * "protobuf-newest": "npm:@bufbuild/protobuf@2.17.0", which is how the
 * repository holds a second version of a peer in the cache, to test the top
 * of a range as well as its bottom.
 */
function lockEntry(name: string, version: string | undefined): LockEntry {
  const top = repoLock.packages[`node_modules/${name}`];
  if (top !== undefined && (version === undefined || top.version === version)) return top;
  const alias = Object.values(repoLock.packages).find((e) => e.name === name && e.version === version);
  assert.ok(alias, `${name}@${version ?? "any"} is not in the repository's lockfile`);
  return alias;
}

function pick(from: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => from[k] !== undefined).map((k) => [k, from[k]]));
}

/** The repository's TypeScript compiler, run on a project outside the repository. */
export async function tsc(project: string): Promise<void> {
  const bin = `${root}node_modules/typescript/bin/tsc`;
  try {
    await run(process.execPath, [bin, "-p", project], { timeout: 120_000 });
  } catch (e) {
    const { stdout = "", stderr = "" } = e as { stdout?: string; stderr?: string };
    throw new Error(`tsc -p ${project} failed:\n${stdout}${stderr}`);
  }
}

/** The ```ts blocks of a Markdown file, in order. */
export function tsBlocks(file: string): string[] {
  return [...readFileSync(file, "utf8").matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string);
}
