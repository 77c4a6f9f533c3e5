import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { fillBlock, generatedBlocks, readPage } from "../scripts/docs-blocks.js";
import { startServer, type TestServer } from "./support/server.js";

// The README's and docs/'s recipes, run exactly as written (only the port
// differs), so that what a new user copies works: curl with the Connect
// envelope piped from printf, buf curl, the Node client, Python, Go. A
// recipe marked dir="empty" is what a team does in a project of its own: it
// runs in a new empty directory outside the repository, with STREAM_SERVICE
// naming the clone (as its text says). And the parts of the docs written from
// a source (the configuration table, the benchmark's tables) equal to that
// source.

const run = promisify(execFile);
const pages = [
  "README.md",
  ...readdirSync(new URL("../docs", import.meta.url))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

// Recipes per page. A recipe that is lost (a marker mistyped, a block moved
// away) or gained changes a count here, in the same commit.
const expectedRecipes: Record<string, number> = {
  "README.md": 3,
  "docs/architecture.md": 0,
  "docs/capacity.md": 0,
  "docs/clients.md": 13,
  "docs/deploy.md": 0,
  "docs/http.md": 3,
  "docs/observability.md": 1,
  "docs/operations.md": 4,
  "docs/performance.md": 0,
  "docs/reliability.md": 0,
};

interface Recipe {
  page: string;
  expect: string;
  script: string;
  /** Runs in a new empty directory outside the repository, rather than at its root. */
  empty: boolean;
}
// <!-- recipe expect="..." --> (or expect='...', and dir="empty") right before a ```sh block.
const recipes: Recipe[] = pages.flatMap((page) =>
  [
    ...readPage(page).matchAll(/<!-- recipe expect=(?:"([^"]+)"|'([^']+)')( dir="empty")? -->\n```sh\n([\s\S]*?)```/g),
  ].map((m) => ({
    page,
    expect: (m[1] ?? m[2]) as string,
    script: m[4] as string,
    empty: m[3] !== undefined,
  })),
);
const root = new URL("..", import.meta.url).pathname;

describe("the docs' recipes", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  it("should be found in each page, as many as expected", () => {
    const found = Object.fromEntries(pages.map((p) => [p, recipes.filter((r) => r.page === p).length]));
    assert.deepEqual(found, expectedRecipes);
    for (const page of pages) {
      const markers = readPage(page).match(/^<!-- recipe /gm)?.length ?? 0;
      assert.equal(markers, found[page], `${page}: a recipe marker not followed by a sh block`);
    }
  });

  for (const recipe of recipes) {
    const title = recipe.script.split("\n")[0]?.trim() ?? "";
    it(`should work as written (${recipe.page}${recipe.empty ? ", from an empty directory" : ""}): ${title}`, async () => {
      const script = recipe.script.replaceAll("localhost:8080", `127.0.0.1:${srv.port}`);
      const cwd = recipe.empty ? await mkdtemp(`${tmpdir()}/recipe-`) : root;
      try {
        const { stdout } = await run("bash", ["-eo", "pipefail", "-c", script], {
          cwd,
          // npm takes what the cache holds (npm ci filled it) before asking the registry: same packages, less waiting.
          env: recipe.empty
            ? { ...process.env, STREAM_SERVICE: root.replace(/\/$/, ""), npm_config_prefer_offline: "true" }
            : process.env,
          timeout: recipe.empty ? 240_000 : 60_000,
          maxBuffer: 16 * 1024 * 1024,
          encoding: "latin1",
        });
        assert.ok(stdout.includes(recipe.expect), `output lacks ${JSON.stringify(recipe.expect)}:\n${stdout}`);
      } finally {
        if (recipe.empty) await rm(cwd, { recursive: true, force: true });
      }
    });
  }
});

describe("the generated parts of the docs", () => {
  for (const block of generatedBlocks) {
    it(`should hold ${block.file}'s ${block.name} equal to its source`, () => {
      const page = readPage(block.file);
      assert.equal(page, fillBlock(page, block.name, block.render()), "run npm run docs:generate");
    });
  }
});

describe("the benchmark figures in the docs", () => {
  const latest = JSON.parse(readFileSync(new URL("../bench/results/latest.json", import.meta.url), "utf8"));
  const tables = readPage("bench/results/latest.md");
  // "2026-11-25 15:07 UTC", as the run's tables and the docs name it.
  const runName = `${(latest.date as string).slice(0, 10)} ${(latest.date as string).slice(11, 16)} UTC`;

  for (const page of ["README.md", "docs/performance.md"]) {
    it(`should name the latest full run in ${page} and quote only its figures`, () => {
      assert.equal(latest.mode, "full");
      const text = readPage(page);
      assert.ok(text.includes(runName), `${page} does not name the run of ${runName}`);
      // Ratios ("6.91x") and rounded rates ("586k") are cells of the run's tables.
      const quoted = [...text.matchAll(/\b\d+(?:\.\d+)?[xk]\b/g)].map((m) => m[0]);
      assert.ok(quoted.length >= 8, `${page} quotes ${quoted.length} figures`);
      for (const figure of quoted) assert.ok(tables.includes(figure), `${page}: ${figure} is not in the run's tables`);
    });
  }
});
