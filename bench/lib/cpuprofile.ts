/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof` or the inspector): self time per function,
 * with locations in this project mapped back to the TypeScript sources through the emitted source
 * maps, and the share of time per area (our code, dependencies, Node internals, GC, idle).
 */
import { existsSync, readFileSync } from "node:fs";
import { SourceMap, type SourceMapPayload } from "node:module";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DIST, REPO } from "./child.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface HotSpot {
  name: string;
  where: string;
  area: string;
  selfMs: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of sampled time per area, busiest first. */
  areas: Array<{ area: string; share: number }>;
  top: HotSpot[];
}

const maps = new Map<string, SourceMap | null>();

function sourceMapFor(file: string): SourceMap | null {
  if (!maps.has(file)) {
    let map: SourceMap | null = null;
    if (existsSync(`${file}.map`)) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, "utf8")) as SourceMapPayload);
      } catch {
        map = null;
      }
    }
    maps.set(file, map);
  }
  return maps.get(file) ?? null;
}

function area(url: string, name: string): string {
  if (name === "(garbage collector)") return "garbage collection";
  if (name === "(idle)") return "idle";
  if (name === "(program)") return "V8/native (program)";
  if (url === "") return "native";
  if (url.startsWith("node:")) return "Node internals";
  const ours = url.startsWith("file://") ? relative(DIST, fileURLToPath(url)) : "..";
  if (!ours.startsWith("..")) return `ours: ${ours.split("/")[0] ?? "?"}/`;
  if (url.includes("/node_modules/")) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    return `dependency ${m?.[1] ?? "?"}`;
  }
  return "other";
}

function location(url: string, line: number, column: number): string {
  if (!url.startsWith("file://")) return url || "(native)";
  const file = fileURLToPath(url);
  const map = sourceMapFor(file);
  const entry = map?.findEntry(line, column) as
    { originalSource?: string; originalLine?: number } | undefined;
  if (entry?.originalSource) {
    const src = entry.originalSource.startsWith("file://")
      ? fileURLToPath(entry.originalSource)
      : entry.originalSource;
    return `${relative(REPO, resolve(dirname(file), src))}:${(entry.originalLine ?? 0) + 1}`;
  }
  const rel = file.includes("/node_modules/")
    ? file.replace(/^.*\/node_modules\//, "node_modules/")
    : relative(REPO, file);
  return `${rel}:${line + 1}`;
}

/** Native frames have no URL; they are described through their nearest JavaScript callers. */
function isNative(node: ProfileNode): boolean {
  return node.callFrame.url === "" && !node.callFrame.functionName.startsWith("(");
}

export function summarizeProfile(file: string, topN = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    // The delta before sample i+1 is the time spent in sample i.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  /** The nearest callers of a frame that are JavaScript with a URL, innermost first. */
  const callers = (id: number, n: number): ProfileNode[] => {
    const out: ProfileNode[] = [];
    let p = parent.get(id);
    for (let depth = 0; p !== undefined && out.length < n && depth < 200; depth++) {
      const node = byId.get(p);
      if (node && node.callFrame.url !== "") out.push(node);
      p = parent.get(p);
    }
    return out;
  };
  const describe = (n: ProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${location(n.callFrame.url, n.callFrame.lineNumber, n.callFrame.columnNumber)}`;
  let total = 0;
  const perFunction = new Map<string, HotSpot>();
  const perArea = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const { functionName, url, lineNumber, columnNumber } = node.callFrame;
    const name = functionName || "(anonymous)";
    let a = area(url, name);
    let where: string;
    if (isNative(node)) {
      const up = callers(id, 8);
      const outside = up.find((c) => !c.callFrame.url.startsWith("node:"));
      const via = outside ? area(outside.callFrame.url, outside.callFrame.functionName) : "Node internals";
      const sqlite = outside && /sqlite/.test(outside.callFrame.url);
      a = sqlite ? "SQLite (better-sqlite3 native)" : `native, called from ${via}`;
      where = `native ← ${up
        .slice(0, 2)
        .map((c) => describe(c))
        .join(" ← ")}`;
    } else {
      where = location(url, lineNumber, columnNumber);
    }
    perArea.set(a, (perArea.get(a) ?? 0) + us);
    const key = `${name} ${where}`;
    const spot = perFunction.get(key) ?? { name, where, area: a, selfMs: 0, share: 0 };
    spot.selfMs += us / 1000;
    perFunction.set(key, spot);
  }
  const busy = total - (perArea.get("idle") ?? 0);
  const top = [...perFunction.values()]
    .filter((s) => s.area !== "idle")
    .sort((x, y) => y.selfMs - x.selfMs)
    .slice(0, topN)
    .map((s) => ({ ...s, share: busy > 0 ? (s.selfMs * 1000) / busy : 0 }));
  const areas = [...perArea.entries()]
    .filter(([a]) => a !== "idle")
    .map(([a, us]) => ({ area: a, share: busy > 0 ? us / busy : 0 }))
    .sort((x, y) => y.share - x.share);
  return { totalMs: busy / 1000, areas, top };
}

/** Markdown lines describing a profile: areas, then the hottest functions by self time. */
export function profileMarkdown(title: string, s: ProfileSummary): string[] {
  const lines = [
    `${title}: ${Math.round(s.totalMs)} ms of non-idle samples. By area: ` +
      s.areas
        .slice(0, 8)
        .map((a) => `${a.area} ${(a.share * 100).toFixed(1)}%`)
        .join(", ") +
      ".",
    "",
    "| self time | share | function | where |",
    "| ---: | ---: | --- | --- |",
  ];
  for (const t of s.top) {
    lines.push(`| ${t.selfMs.toFixed(0)} ms | ${(t.share * 100).toFixed(1)}% | \`${t.name}\` | ${t.where} |`);
  }
  return lines;
}
