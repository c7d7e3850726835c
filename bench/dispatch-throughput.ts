/**
 * Benchmark 3, dispatch throughput: 10,000 webhooks posted as fast as the coordinator takes them,
 * drained by 100 real agents with the instant backend; jobs per second from the first webhook to
 * the last final message delivered to Conduit (intake, queue, dispatch, finish, outbox).
 */
import type { Child } from "./lib/child.js";
import { ConduitSink, SINK_TOKEN } from "./lib/conduit-sink.js";
import { profileCoordinator } from "./lib/profiling.js";
import { CpuMeter, CpuSplitMeter } from "./lib/procfs.js";
import type { BenchResult, Figure } from "./lib/report.js";
import {
  Scratch,
  startCoordinatorProcess,
  startFleet,
  waitForAgents,
  type CoordinatorProcess,
} from "./lib/stack.js";
import { fmt, median } from "./lib/stats.js";
import { enc, WebhookClient } from "./lib/webhook-client.js";

const JOBS = 10_000;
const AGENTS = 100;
const FLEET_PROCESSES = 2;
const RUNS = 5;
const PROFILE_JOBS = 2_000;
const WEBHOOK_CONCURRENCY = 16;
const RUN_TIMEOUT_MS = 150_000;
const STAGING = "https://phab.example.test/source/bench.git";
const GOAL_JOBS_PER_S = 1000;

interface RunFigures {
  jobsPerS: number;
  intakePerS: number;
  coordinatorCpu: number;
  fleetCpu: number;
  completed: number;
  /** Coordinator CPU per job (all threads), its kernel share, its main thread's part, machine busy. */
  cpuPerJobUs: number;
  systemPct: number;
  mainThreadPerJobUs: number;
  machineBusyPct: number;
}

async function drain(
  coordinator: CoordinatorProcess,
  fleet: Child[],
  sink: ConduitSink,
  tag: string,
  jobs: number,
): Promise<RunFigures> {
  const client = new WebhookClient(coordinator.url, WEBHOOK_CONCURRENCY);
  const queries = Array.from(
    { length: jobs },
    (_, i) =>
      `/harbormaster?target=PHID-HMBT-${tag}x${i}&staging=${enc(STAGING)}&ref=refs/tags/phabricator/diff/${i + 1}`,
  );
  const before = sink.finals.size;
  const cpu = new CpuMeter(coordinator.pid);
  const split = new CpuSplitMeter(coordinator.pid);
  const fleetCpu = fleet.map((f) => new CpuMeter(f.pid));
  const t0 = process.hrtime.bigint();
  try {
    await client.postAll(queries, WEBHOOK_CONCURRENCY);
    const tIntake = process.hrtime.bigint();
    const done = await sink.until(() => sink.finals.size - before >= jobs, RUN_TIMEOUT_MS);
    const tEnd = process.hrtime.bigint();
    const completed = sink.finals.size - before;
    const seconds = Number(tEnd - t0) / 1e9;
    const where = split.read();
    if (!done)
      console.error(`   ${tag}: only ${completed} of ${jobs} jobs reported within ${RUN_TIMEOUT_MS} ms`);
    return {
      jobsPerS: completed / seconds,
      intakePerS: jobs / (Number(tIntake - t0) / 1e9),
      coordinatorCpu: cpu.lap(),
      fleetCpu: fleetCpu.reduce((s, m) => s + m.lap(), 0),
      completed,
      cpuPerJobUs: (where.cpuSeconds / Math.max(1, completed)) * 1e6,
      systemPct: (100 * where.systemSeconds) / Math.max(1e-9, where.cpuSeconds),
      mainThreadPerJobUs: (where.mainThreadSeconds / Math.max(1, completed)) * 1e6,
      machineBusyPct: where.machineBusyPct,
    };
  } finally {
    client.close();
  }
}

export async function dispatchThroughput(): Promise<BenchResult> {
  const t0 = performance.now();
  const sink = await ConduitSink.start();
  const scratch = new Scratch("throughput");
  const runs: RunFigures[] = [];
  const analysis: string[] = [];
  try {
    for (let run = 0; run <= RUNS; run++) {
      const profiled = run === RUNS;
      // Profiled only to explain a miss, unless BENCH_PROFILE=1 asks for it anyway.
      const met = median(runs.map((r) => r.jobsPerS)) >= GOAL_JOBS_PER_S;
      if (profiled && met && process.env["BENCH_PROFILE"] !== "1") break;
      const coordinator = await startCoordinatorProcess({
        dataDir: scratch.sub(`coordinator-${run}`),
        conduit: { url: sink.url, token: SINK_TOKEN },
        fdLimit: 65_536,
      });
      let fleet: Child[] = [];
      try {
        fleet = await startFleet({
          wsUrl: coordinator.wsUrl,
          count: AGENTS,
          processes: FLEET_PROCESSES,
          prefix: `tp${run}p`,
          workDir: scratch.sub(`agents-${run}`),
        });
        await waitForAgents(coordinator.url, AGENTS, 60_000);
        if (!profiled) {
          const r = await drain(coordinator, fleet, sink, `tp${run}`, JOBS);
          runs.push(r);
          console.log(`   run ${run + 1}: ${fmt(r.jobsPerS)} jobs/s`);
        } else {
          const f = fleet;
          const p = await profileCoordinator(
            coordinator,
            `Coordinator CPU profile over a further run of ${PROFILE_JOBS.toLocaleString("en-US")} jobs`,
            async () => void (await drain(coordinator, f, sink, `tpprof`, PROFILE_JOBS)),
          );
          analysis.push(...p.lines);
        }
      } finally {
        await Promise.all(fleet.map((f) => f.stop()));
        await coordinator.child.stop();
      }
    }
  } finally {
    await sink.close();
    scratch.cleanup();
  }
  const figures: Figure[] = [
    {
      name: "jobs per second, webhook to final Conduit message",
      unit: "jobs/s",
      values: runs.map((r) => r.jobsPerS),
      goal: { op: ">=", value: GOAL_JOBS_PER_S },
    },
    { name: "intake alone (all 202s read back)", unit: "webhooks/s", values: runs.map((r) => r.intakePerS) },
    {
      name: "coordinator CPU during the run",
      unit: "% of a core",
      values: runs.map((r) => r.coordinatorCpu),
    },
    { name: "agent processes' CPU during the run", unit: "% of a core", values: runs.map((r) => r.fleetCpu) },
    { name: "coordinator CPU per job, all threads", unit: "µs", values: runs.map((r) => r.cpuPerJobUs) },
    {
      name: "of it on the main (JavaScript) thread",
      unit: "µs",
      values: runs.map((r) => r.mainThreadPerJobUs),
    },
    { name: "kernel share of the coordinator's CPU", unit: "%", values: runs.map((r) => r.systemPct) },
    {
      name: "whole machine busy during the run",
      unit: "% of both cores",
      values: runs.map((r) => r.machineBusyPct),
    },
  ];
  const incomplete = runs.filter((r) => r.completed < JOBS);
  const m = (f: (r: RunFigures) => number) => median(runs.map(f));
  if (m((r) => r.jobsPerS) < GOAL_JOBS_PER_S) {
    const fleetUs = m((r) => (r.fleetCpu / 100 / Math.max(1, r.jobsPerS)) * 1e6);
    analysis.unshift(
      `Budget: at ${GOAL_JOBS_PER_S.toLocaleString("en-US")} jobs/s the coordinator may spend 1,000 µs of CPU per job, and every`,
      "process on the machine together 2,000 µs (two cores). Measured: the coordinator",
      `${fmt(m((r) => r.cpuPerJobUs))} µs per job (${fmt(m((r) => r.mainThreadPerJobUs))} µs of it on its JavaScript thread, the rest in the`,
      `thread pool: fdatasync of the WAL), ${fmt(m((r) => r.systemPct))} % of it in the kernel; the agents ${fmt(fleetUs)} µs; the`,
      `machine was ${fmt(m((r) => r.machineBusyPct))} % busy. The kernel time is the syscalls the work needs (loopback TCP`,
      "writes also run the receiving side; SQLite's WAL writes and syncs).",
      "",
    );
  }
  return {
    id: "dispatch-throughput",
    title: "3. Dispatch throughput",
    method: [
      `A coordinator process (default settings) with Conduit reporting to a stub that accepts every call,`,
      `${AGENTS} real agents (capacity 1, instant backend) in ${FLEET_PROCESSES} processes. This process posts`,
      `${JOBS.toLocaleString("en-US")} webhooks, ${WEBHOOK_CONCURRENCY} in flight, while the agents drain the queue; the`,
      "figure is jobs divided by the time from the first webhook to the last `pass` message reaching",
      "Conduit, so it covers intake, queue, dispatch, accept, phases, log, finish and the outbox (two",
      `Conduit calls per job). ${RUNS} runs, each with a fresh coordinator and agents. All processes share the`,
      "machine's two cores with the stub and the webhook client.",
    ],
    figures,
    notes:
      incomplete.length > 0
        ? [
            `${incomplete.length} run(s) did not finish within ${RUN_TIMEOUT_MS / 1000} s; their rate counts what was done.`,
          ]
        : [],
    analysis,
    seconds: (performance.now() - t0) / 1000,
  };
}
