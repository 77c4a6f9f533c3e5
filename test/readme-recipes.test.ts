import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { startServer, type TestServer } from "./support/server.js";

// The README's recipes, run exactly as written (only the port differs), so
// that what a new user copies works: curl with the Connect envelope piped from
// printf, buf curl, the Node client.

const run = promisify(execFile);
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
// <!-- recipe expect="..." --> (or expect='...') right before a ```sh block.
const recipes = [...readme.matchAll(/<!-- recipe expect=(?:"([^"]+)"|'([^']+)') -->\n```sh\n([\s\S]*?)```/g)].map(
  (m) => ({
    expect: (m[1] ?? m[2]) as string,
    script: m[3] as string,
  }),
);

describe("the README's recipes", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  it("should be found in the README", () => {
    assert.ok(recipes.length >= 14, `found ${recipes.length} recipes`);
  });

  for (const recipe of recipes) {
    const title = recipe.script.split("\n")[0]?.trim() ?? "";
    it(`should work as written: ${title}`, async () => {
      const script = recipe.script.replaceAll("localhost:8080", `127.0.0.1:${srv.port}`);
      const { stdout } = await run("bash", ["-eo", "pipefail", "-c", script], {
        cwd: new URL("..", import.meta.url),
        timeout: 60_000,
        encoding: "latin1",
      });
      assert.ok(stdout.includes(recipe.expect), `output lacks ${JSON.stringify(recipe.expect)}:\n${stdout}`);
    });
  }
});
