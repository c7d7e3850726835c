import type { BenchResult } from "./lib/report.js";

export function footprint(): Promise<BenchResult> {
  return Promise.reject(new Error("not written yet"));
}
