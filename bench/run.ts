/**
 * `npm run bench`: runs every benchmark on this machine and rewrites bench/RESULTS.md.
 *
 * BENCH_ONLY=id[,id…] runs only those (ids: e2e-overhead, dispatch-latency, dispatch-throughput,
 * connection-scale, log-throughput, footprint, prune-burst); the report then goes to a file in the temp
 * directory instead, so a partial run never replaces the full results. BENCH_VERBOSE=1 shows the
 * children's stderr; BENCH_PROFILE=1 profiles the coordinator in dispatch-throughput even when
 * the goal is met.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireDocker } from "../test/helpers/docker-images.js";
import { connectionScale } from "./connection-scale.js";
import { dispatchLatency } from "./dispatch-latency.js";
import { dispatchThroughput } from "./dispatch-throughput.js";
import { e2eOverhead } from "./e2e-overhead.js";
import { footprint } from "./footprint.js";
import { killAllNow, REPO, stopAll } from "./lib/child.js";
import { machineLines } from "./lib/machine.js";
import { profileFiles } from "./lib/profiling.js";
import { renderResults, type BenchResult } from "./lib/report.js";
import { logThroughput } from "./log-throughput.js";
import { pruneBurst } from "./prune-burst.js";

const BENCHMARKS: Array<{ id: string; title: string; run: () => Promise<BenchResult> }> = [
  { id: "e2e-overhead", title: "1. End-to-end overhead", run: e2eOverhead },
  { id: "dispatch-latency", title: "2. Dispatch latency", run: dispatchLatency },
  { id: "dispatch-throughput", title: "3. Dispatch throughput", run: dispatchThroughput },
  { id: "connection-scale", title: "4. Connection scale", run: connectionScale },
  { id: "log-throughput", title: "5. Log throughput", run: logThroughput },
  { id: "footprint", title: "6. Footprint", run: footprint },
  { id: "prune-burst", title: "7. Builds during a prune", run: pruneBurst },
];

async function main(): Promise<void> {
  const started = performance.now();
  const only = (process.env["BENCH_ONLY"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const unknown = only.filter((id) => !BENCHMARKS.some((b) => b.id === id));
  if (unknown.length > 0) {
    throw new Error(
      `unknown benchmark ${unknown.join(", ")}; known: ${BENCHMARKS.map((b) => b.id).join(", ")}`,
    );
  }
  const selected = only.length > 0 ? BENCHMARKS.filter((b) => only.includes(b.id)) : BENCHMARKS;
  const docker = await requireDocker();
  const machine = await machineLines(docker);

  const results: BenchResult[] = [];
  for (const b of selected) {
    const t0 = performance.now();
    console.log(`\n== ${b.title}`);
    try {
      results.push(await b.run());
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      console.error(`${b.id} failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
      results.push({
        id: b.id,
        title: b.title,
        method: [],
        figures: [],
        notes: [],
        analysis: [],
        error: message.split("\n")[0] ?? message,
        seconds: (performance.now() - t0) / 1000,
      });
    } finally {
      await stopAll();
    }
    const last = results.at(-1);
    console.log(
      `   done in ${Math.round((performance.now() - t0) / 1000)} s${last?.error ? " (failed)" : ""}`,
    );
  }

  const markdown = renderResults(machine, results, (performance.now() - started) / 1000);
  const target =
    only.length > 0 ? join(tmpdir(), "phab-dock-ci-bench-RESULTS.md") : join(REPO, "bench", "RESULTS.md");
  writeFileSync(target, markdown);
  console.log(`\n${markdown}`);
  console.log(`results written to ${target}`);
  if (profileFiles.length > 0) console.log(`profiles: ${profileFiles.join(" ")}`);
}

process.on("exit", killAllNow);
process.on("SIGINT", () => {
  void stopAll().finally(() => process.exit(130));
});

main().catch(async (err: unknown) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await stopAll();
  process.exit(1);
});
