import type { BenchResult } from "./lib/report.js";

export function logThroughput(): Promise<BenchResult> {
  return Promise.reject(new Error("not written yet"));
}
