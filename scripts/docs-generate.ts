import { writeFileSync } from "node:fs";
import { fillBlock, generatedBlocks, pageUrl, readPage } from "./docs-blocks.js";

// npm run docs:generate: rewrites the generated parts of docs/ (see docs-blocks.ts).

for (const block of generatedBlocks) {
  const before = readPage(block.file);
  const after = fillBlock(before, block.name, block.render());
  if (after !== before) writeFileSync(pageUrl(block.file), after);
  process.stdout.write(`${block.file}: ${block.name} ${after === before ? "unchanged" : "rewritten"}\n`);
}
