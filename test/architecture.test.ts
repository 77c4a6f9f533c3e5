import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

// The rooms of src/ and who may enter which (docs/architecture.md). Every
// request comes in through the front door (door/), which lists the roads
// (entries/<road>) beside each other and the policies before them; every
// road ends in core/; what the roads share is in entries/kit/ and http/.
// connect's private API is borrowed in connect-internals/ alone. The client
// package (packages/client/src) stands apart: it ships alone, so it imports
// nothing of the repository, and the page and the CLI enter it only by its
// exports. Read from the import statements of every file, so a rule broken
// in any file fails here.

const root = fileURLToPath(new URL("..", import.meta.url));

interface Import {
  from: string;
  /** The specifier as written. */
  specifier: string;
  /** Repository-relative path of a relative import, else undefined (a package or node: module). */
  target: string | undefined;
}

function files(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith("web/dist/"));
}

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(root, file), "utf8");
  const out: Import[] = [];
  const pattern =
    /(?:^|\n)\s*(?:import|export)\s[^"';]*?from\s*"([^"]+)"|import\(\s*"([^"]+)"\s*\)|(?:^|\n)import\s+"([^"]+)"/g;
  for (const m of text.matchAll(pattern)) {
    const specifier = m[1] ?? m[2] ?? m[3] ?? "";
    const target = specifier.startsWith(".")
      ? path.relative(root, path.resolve(path.dirname(path.join(root, file)), specifier)).replace(/\.js$/, ".ts")
      : undefined;
    out.push({ from: file, specifier, target });
  }
  return out;
}

/** The room a repository path is in: "core", "entries/kit", "entries/connect", "ops", "gen", "web", ... */
function roomOf(file: string): string {
  const parts = file.split("/");
  if (parts[0] === "packages") return `packages/${parts[1]}`;
  if (parts[0] === "src" && parts[1] === "entries") return `entries/${parts[2]}`;
  if (parts[0] === "src") return parts.length === 2 ? `src/${parts[1]}` : (parts[1] ?? "");
  return parts[0] ?? "";
}

const all = [...files("src"), ...files("web"), ...files("packages/client/src")].flatMap(importsOf);

function violations(rule: (i: Import) => boolean): string[] {
  return all.filter(rule).map((i) => `${i.from} imports ${i.specifier}`);
}

const transports = ["node:http", "node:http2", "node:net", "node:tls", "@connectrpc/connect-node"];
const nodeOnly = (s: string) => s.startsWith("node:") || s === "@connectrpc/connect-node" || s === "prom-client";

const clientPackage = JSON.parse(readFileSync(path.join(root, "packages/client/package.json"), "utf8"));
/** The package's exports, as the files they are built from: "." and "./node". */
const packageEntries = ["packages/client/src/index.ts", "packages/client/src/node.ts"];
/** A package specifier's name: "@bufbuild/protobuf/wkt" is "@bufbuild/protobuf". */
const packageName = (s: string) => (s.startsWith("@") ? s.split("/").slice(0, 2) : s.split("/").slice(0, 1)).join("/");

describe("the rooms of src/", () => {
  it("should find the files and their imports it checks", () => {
    assert.ok(all.length > 100, `only ${all.length} imports found`);
    assert.ok(all.some((i) => i.from === "src/core/stream-service.ts" && i.target === "src/core/pacer.ts"));
  });

  it("should keep core free of transports and of every other room", () => {
    assert.deepEqual(
      violations(
        (i) =>
          roomOf(i.from) === "core" &&
          (transports.includes(i.specifier) ||
            (i.target !== undefined && !["core", "shared", "gen"].includes(roomOf(i.target)))),
      ),
      [],
    );
  });

  it("should let no road import another road", () => {
    assert.deepEqual(
      violations((i) => {
        const from = roomOf(i.from);
        if (!from.startsWith("entries/") || from === "entries/kit" || i.target === undefined) return false;
        const to = roomOf(i.target);
        return to.startsWith("entries/") && to !== "entries/kit" && to !== from;
      }),
      [],
    );
  });

  it("should let the roads and their kit use only core, the kit, http, connect-internals, shared, gen and the logger's type", () => {
    const allowed = ["core", "entries/kit", "http", "connect-internals", "shared", "gen"];
    assert.deepEqual(
      violations((i) => {
        const from = roomOf(i.from);
        if (!from.startsWith("entries/") || i.target === undefined) return false;
        const to = roomOf(i.target);
        return !(allowed.includes(to) || to === from || i.target === "src/ops/log.ts");
      }),
      [],
    );
  });

  it("should let ops and http import no road, no front door and no server", () => {
    assert.deepEqual(
      violations((i) => {
        const from = roomOf(i.from);
        if (!["ops", "http"].includes(from) || i.target === undefined) return false;
        const to = roomOf(i.target);
        return to.startsWith("entries/") || to === "door" || to === "server" || to === "config";
      }),
      [],
    );
  });

  it("should keep the front door out of the server's rooms: it decides requests, the server listens", () => {
    assert.deepEqual(
      violations((i) => roomOf(i.from) === "door" && i.target !== undefined && roomOf(i.target) === "server"),
      [],
    );
  });

  it("should let only connect-internals import connect's private entry points", () => {
    assert.deepEqual(
      violations((i) => /^@connectrpc\/connect\/protocol/.test(i.specifier) && roomOf(i.from) !== "connect-internals"),
      [],
    );
  });

  it("should keep connect-internals to connect and the generated code", () => {
    assert.deepEqual(
      violations((i) => roomOf(i.from) === "connect-internals" && i.target !== undefined && roomOf(i.target) !== "gen"),
      [],
    );
  });

  it("should keep the shared helpers free of anything Node-only, for the web page", () => {
    assert.deepEqual(
      violations(
        (i) =>
          roomOf(i.from) === "shared" &&
          (nodeOnly(i.specifier) || (i.target !== undefined && !["shared", "gen"].includes(roomOf(i.target)))),
      ),
      [],
    );
  });

  it("should keep the client package self-contained: nothing of the repository, only its peer dependencies", () => {
    const peers = Object.keys(clientPackage.peerDependencies);
    assert.deepEqual(
      violations(
        (i) =>
          roomOf(i.from) === "packages/client" &&
          (i.target !== undefined
            ? roomOf(i.target) !== "packages/client"
            : !i.specifier.startsWith("node:") && !peers.includes(packageName(i.specifier))),
      ),
      [],
    );
  });

  it("should keep the client package's browser entry (everything but node.ts) free of Node and of transports", () => {
    assert.deepEqual(
      violations(
        (i) =>
          roomOf(i.from) === "packages/client" &&
          i.from !== "packages/client/src/node.ts" &&
          (nodeOnly(i.specifier) ||
            i.specifier === "@connectrpc/connect-web" ||
            i.target === "packages/client/src/node.ts"),
      ),
      [],
    );
  });

  it("should let the CLI and the page enter the client package only by its exports", () => {
    assert.deepEqual(
      violations(
        (i) =>
          roomOf(i.from) !== "packages/client" &&
          i.target !== undefined &&
          roomOf(i.target) === "packages/client" &&
          !packageEntries.includes(i.target),
      ),
      [],
    );
    assert.deepEqual(Object.keys(clientPackage.exports), [".", "./node", "./package.json"]);
  });

  it("should let the web page import only the client package's browser entry, shared helpers and gen", () => {
    assert.deepEqual(
      violations(
        (i) =>
          i.from.startsWith("web/") &&
          i.from !== "web/build.ts" &&
          (nodeOnly(i.specifier) ||
            (i.target !== undefined &&
              i.target !== "packages/client/src/index.ts" &&
              !["src/shared", "gen"].some((r) => i.target?.startsWith(r)))),
      ),
      [],
    );
  });

  it("should let nothing import an entry point", () => {
    assert.deepEqual(
      violations((i) => i.target === "src/main.ts" || i.target === "src/client-main.ts"),
      [],
    );
  });
});
