import { readFileSync } from "node:fs";

// A V8 heap snapshot summed by kind of object, for bench/heap.ts.

/** Bytes and objects of one kind in a snapshot. */
export type Kinds = Map<string, { bytes: number; count: number }>;

/**
 * Sums a .heapsnapshot's nodes by kind: an object by its constructor's name,
 * everything else by V8's node type ("(closure)", "(compiled code)", ...).
 * The file is read as bytes and its node array scanned by hand: a snapshot of
 * a big heap is too long for one JavaScript string.
 */
export function kindsOf(file: string): { kinds: Kinds; total: number } {
  const buf = readFileSync(file);
  const metaEnd = buf.indexOf('"nodes":[');
  const meta = JSON.parse(buf.subarray(buf.indexOf("{", 1), metaEnd).toString().replace(/,\s*$/, "")) as {
    meta: { node_fields: string[]; node_types: [string[], ...unknown[]] };
  };
  const fields = meta.meta.node_fields;
  const types = meta.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const stringsAt = buf.lastIndexOf('"strings":[');
  const strings = JSON.parse(
    buf.subarray(stringsAt + '"strings":'.length, buf.lastIndexOf("]") + 1).toString(),
  ) as string[];
  const kinds: Kinds = new Map();
  let total = 0;
  const node: number[] = [];
  let n = 0;
  let inNumber = false;
  const end = buf.indexOf("]", metaEnd);
  for (let i = metaEnd + '"nodes":['.length; i <= end; i++) {
    const c = buf[i] as number;
    if (c >= 48 && c <= 57) {
      n = inNumber ? n * 10 + (c - 48) : c - 48;
      inNumber = true;
      continue;
    }
    if (!inNumber) continue;
    inNumber = false;
    node.push(n);
    if (node.length < fields.length) continue;
    const type = types[node[typeAt] as number] ?? "?";
    const name = strings[node[nameAt] as number] ?? "?";
    const size = node[sizeAt] as number;
    const kind = type === "object" || type === "native" ? name : `(${type})`;
    const k = kinds.get(kind) ?? { bytes: 0, count: 0 };
    k.bytes += size;
    k.count++;
    kinds.set(kind, k);
    total += size;
    node.length = 0;
  }
  return { kinds, total };
}
