import { readFileSync } from "node:fs";
import { type OptionSpec, options } from "../src/config/config.js";

// The parts of docs/ that are written from a source rather than by hand, each
// between `<!-- generated: NAME ... -->` and `<!-- end generated: NAME -->`.
// scripts/docs-generate.ts writes them; test/docs.test.ts fails when one differs.

const root = new URL("..", import.meta.url);

export interface GeneratedBlock {
  name: string;
  /** The page, relative to the repository. */
  file: string;
  render(): string;
}

export const generatedBlocks: GeneratedBlock[] = [
  { name: "config-table", file: "docs/operations.md", render: configTable },
  {
    name: "bench-latest",
    file: "docs/performance.md",
    render: () => readFileSync(new URL("bench/results/latest.md", root), "utf8").trim(),
  },
  {
    name: "bench-heap",
    file: "docs/performance.md",
    render: () => readFileSync(new URL("bench/results/heap.md", root), "utf8").trim(),
  },
  {
    name: "bench-capacity",
    file: "docs/capacity.md",
    render: () => readFileSync(new URL("bench/results/capacity.md", root), "utf8").trim(),
  },
];

/** The configuration table, from the options' one declaration in src/config/config.ts. */
export function configTable(): string {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  const rows = (Object.values(options) as OptionSpec<unknown>[]).map((o) => {
    const none = o.default === undefined || (Array.isArray(o.default) && o.default.length === 0);
    return [
      `\`--${o.flag}\`${o.repeatable ? " (repeatable)" : ""}`,
      `\`${o.env}\`${o.repeatable ? " (comma-separated)" : ""}`,
      none ? o.kind.show(o.default) : `\`${o.kind.show(o.default)}\``,
      o.kind.accepts,
      o.doc,
    ].map(cell);
  });
  return [
    "| flag | env | default | values | meaning |",
    "| --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** `text` with the block's markers enclosing `body`; throws when the markers are missing. */
export function fillBlock(text: string, name: string, body: string): string {
  const start = new RegExp(`^<!-- generated: ${name}(?= |-->).*-->\\n`, "m").exec(text);
  const end = text.indexOf(`<!-- end generated: ${name} -->`);
  if (start === null || end < start.index) throw new Error(`no <!-- generated: ${name} --> markers`);
  const from = start.index + start[0].length;
  return `${text.slice(0, from)}${body}\n${text.slice(end)}`;
}

export function readPage(file: string): string {
  return readFileSync(new URL(file, root), "utf8");
}

export function pageUrl(file: string): URL {
  return new URL(file, root);
}
