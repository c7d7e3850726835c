import type { BenchResult } from "./lib/report.js";

export function e2eOverhead(): Promise<BenchResult> {
  return Promise.reject(new Error("not written yet"));
}
