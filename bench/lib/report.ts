/** The shape of a benchmark's result and its rendering into RESULTS.md. */
import { fmt, max, median, min } from "./stats.js";

export interface Goal {
  op: "<=" | ">=";
  value: number;
}

export interface Figure {
  name: string;
  unit: string;
  /** One value per repeated run. */
  values: number[];
  goal?: Goal;
  digits?: number;
}

export interface BenchResult {
  id: string;
  title: string;
  /** How it was measured. */
  method: string[];
  figures: Figure[];
  /** Further measured facts worth showing (plain markdown lines). */
  notes: string[];
  /** Where the time or memory goes, from a profile taken in this run. */
  analysis: string[];
  error?: string;
  seconds: number;
}

export function met(f: Figure): boolean | null {
  if (!f.goal || f.values.length === 0) return null;
  const m = median(f.values);
  return f.goal.op === "<=" ? m <= f.goal.value : m >= f.goal.value;
}

const goalText = (f: Figure): string =>
  f.goal ? `${f.goal.op === "<=" ? "≤" : "≥"} ${fmt(f.goal.value)} ${f.unit}` : "—";

function metText(f: Figure): string {
  const m = met(f);
  return m === null ? "—" : m ? "yes" : "**no**";
}

export function figureTable(figures: Figure[]): string[] {
  const lines = [
    "| figure | median | spread (min – max) | runs | goal | met |",
    "| --- | ---: | ---: | ---: | --- | --- |",
  ];
  for (const f of figures) {
    const d = f.digits;
    const spread = f.values.length > 1 ? `${fmt(min(f.values), d)} – ${fmt(max(f.values), d)}` : "—";
    lines.push(
      `| ${f.name} | ${fmt(median(f.values), d)} ${f.unit} | ${spread} | ${f.values.length} | ${goalText(f)} | ${metText(f)} |`,
    );
  }
  return lines;
}

export function renderResults(machine: string[], results: BenchResult[], totalSeconds: number): string {
  const out: string[] = [
    "# Benchmark results",
    "",
    "Written by `npm run bench` (bench/run.ts); every run rewrites this file. Absolute times depend on",
    "the machine; compare the ratios, which are measured in the same run. Each figure is the median",
    "over repeated runs, with the smallest and largest run as its spread. Memory goals given in MB or KB",
    "are read as MiB and KiB, the units ps, top and /proc report resident memory in.",
    "",
    "## Machine",
    "",
    ...machine,
    `- whole benchmark run: ${Math.round(totalSeconds)} s`,
    "",
    "## Goals at a glance",
    "",
    "| benchmark | figure | median | goal | met |",
    "| --- | --- | ---: | --- | --- |",
  ];
  for (const r of results) {
    if (r.error) out.push(`| ${r.title} | (did not complete) | — | — | **no** |`);
    for (const f of r.figures.filter((x) => x.goal)) {
      out.push(
        `| ${r.title} | ${f.name} | ${fmt(median(f.values), f.digits)} ${f.unit} | ${goalText(f)} | ${metText(f)} |`,
      );
    }
  }
  for (const r of results) {
    out.push("", `## ${r.title}`, "", ...r.method, "");
    if (r.error) out.push(`**The benchmark did not complete:** ${r.error}`, "");
    if (r.figures.length > 0) out.push(...figureTable(r.figures), "");
    if (r.notes.length > 0) out.push(...r.notes, "");
    if (r.analysis.length > 0) out.push("### Where it goes", "", ...r.analysis, "");
    out.push(`_Took ${Math.round(r.seconds)} s._`);
  }
  out.push("");
  return out.join("\n");
}
