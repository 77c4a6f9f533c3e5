// Medians, ratios to grpc-js, and the Markdown tables of a benchmark run.

/** How a figure reads: "higher" is better (throughput) or "lower" (time, memory, CPU). */
export interface FigureSpec {
  key: string;
  title: string;
  unit: string;
  better: "higher" | "lower";
  /** Digits after the point when shown. */
  digits: number;
}

export interface RowSpec {
  key: string;
  title: string;
}

/** samples[row][figure] = one value per run; a missing figure is n/a for that row. */
export type Samples = Record<string, Record<string, number[]>>;

export interface Figure {
  median: number;
  runs: number[];
  /** median / grpc-js median from the same run set; undefined when grpc-js has no such figure. */
  vsGrpcJs: number | undefined;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export function summarize(samples: Samples, baseline: string): Record<string, Record<string, Figure>> {
  const out: Record<string, Record<string, Figure>> = {};
  for (const [row, figures] of Object.entries(samples)) {
    out[row] = {};
    for (const [fig, runs] of Object.entries(figures)) {
      if (runs.length === 0) continue;
      const m = median(runs);
      const base = samples[baseline]?.[fig];
      const b = base === undefined || base.length === 0 ? undefined : median(base);
      out[row][fig] = { median: m, runs, vsGrpcJs: b === undefined || b === 0 ? undefined : m / b };
    }
  }
  return out;
}

function formatValue(v: number, digits: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (Math.abs(v) >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  return v.toFixed(digits);
}

export function cell(f: Figure | undefined, spec: FigureSpec): string {
  if (f === undefined) return "n/a";
  const r = f.vsGrpcJs;
  const ratio = r === undefined || !Number.isFinite(r) ? "" : ` (${r >= 0.1 ? r.toFixed(2) : r.toPrecision(1)}x)`;
  return `${formatValue(f.median, spec.digits)}${ratio}`;
}

/** One Markdown table: a row per server, a column per figure, each cell "median (ratio to grpc-js)". */
export function table(rows: RowSpec[], figures: FigureSpec[], summary: Record<string, Record<string, Figure>>): string {
  const head = `| server | ${figures.map((f) => `${f.title}, ${f.unit} ${f.better === "higher" ? "↑" : "↓"}`).join(" | ")} |`;
  const rule = `|---|${figures.map(() => "---:").join("|")}|`;
  const lines = rows
    .filter((r) => figures.some((f) => summary[r.key]?.[f.key] !== undefined))
    .map((r) => `| ${r.title} | ${figures.map((f) => cell(summary[r.key]?.[f.key], f)).join(" | ")} |`);
  return [head, rule, ...lines].join("\n");
}
