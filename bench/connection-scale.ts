/**
 * Benchmark 4, connection scale: 10,000 idle light agents (bare WebSocket clients in separate
 * processes, beating on the default heartbeat interval) connected to one coordinator process;
 * its resident memory per agent and the CPU it spends on the heartbeats.
 */
import { IDLE_PING_EVERY } from "../agent/agent.js";
import { DEFAULT_TIMING } from "../coordinator/config.js";
import type { Child } from "./lib/child.js";
import { coordinatorMemory, profileCoordinator, type MemoryFigures } from "./lib/profiling.js";
import { CpuMeter, rssBytes } from "./lib/procfs.js";
import type { BenchResult, Figure } from "./lib/report.js";
import {
  Scratch,
  sleep,
  startCoordinatorProcess,
  startLightAgents,
  waitForAgents,
  type CoordinatorProcess,
} from "./lib/stack.js";
import { fmt, median } from "./lib/stats.js";

const AGENTS = 10_000;
const PROCESSES = 10;
const WINDOWS = 3;
const GOAL_KB_PER_AGENT = 50;
const GOAL_CPU_PCT = 5;

/** Median of a few RSS readings a little apart, so one allocation burst does not decide. */
async function steadyRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    readings.push(rssBytes(pid));
    await sleep(200);
  }
  return median(readings);
}

async function heartbeatCount(clients: Child[]): Promise<number> {
  const answers = clients.map((c) => c.waitForEvent("status", 10_000));
  for (const c of clients) c.send("status");
  return (await Promise.all(answers)).reduce((s, a) => s + Number(a["heartbeats"]), 0);
}

export async function connectionScale(): Promise<BenchResult> {
  const t0 = performance.now();
  const scratch = new Scratch("connections");
  let coordinator: CoordinatorProcess | null = null;
  let clients: Child[] = [];
  const cpu: number[] = [];
  const perAgentKb: number[] = [];
  const beatsPerS: number[] = [];
  const analysis: string[] = [];
  const notes: string[] = [];
  // The welcome carries the intervals; the coordinator's defaults are what is measured.
  const heartbeatMs = DEFAULT_TIMING.heartbeatIntervalMs;
  const idleBeatMs = heartbeatMs * DEFAULT_TIMING.idleHeartbeatEvery;
  try {
    coordinator = await startCoordinatorProcess({ dataDir: scratch.sub("coordinator"), fdLimit: 65_536 });
    await sleep(2_000);
    const idleMemory = await coordinatorMemory(coordinator);
    const rss0 = await steadyRss(coordinator.pid);
    const tConnect = performance.now();
    clients = await startLightAgents({
      wsUrl: coordinator.wsUrl,
      count: AGENTS,
      processes: PROCESSES,
      prefix: "scale",
      concurrency: 20,
    });
    await waitForAgents(coordinator.url, AGENTS, 120_000);
    const connectSeconds = (performance.now() - tConnect) / 1000;
    // Let every client's beat timer start (a random phase within one idle interval) and settle.
    await sleep(idleBeatMs + 2_000);
    const meter = new CpuMeter(coordinator.pid);
    let beats = await heartbeatCount(clients);
    for (let w = 0; w < WINDOWS; w++) {
      const start = performance.now();
      await sleep(idleBeatMs);
      cpu.push(meter.lap());
      const nowBeats = await heartbeatCount(clients);
      beatsPerS.push((nowBeats - beats) / ((performance.now() - start) / 1000));
      beats = nowBeats;
      perAgentKb.push((rssBytes(coordinator.pid) - rss0) / AGENTS / 1024);
    }
    const loaded = await coordinatorMemory(coordinator);
    const rss1 = await steadyRss(coordinator.pid);
    const per = (a: number, b: number) => fmt((b - a) / AGENTS / 1024, 1);
    notes.push(
      `Connecting all ${AGENTS.toLocaleString("en-US")} took ${fmt(connectSeconds)} s. Coordinator RSS idle ${fmt(rss0 / 2 ** 20)} MiB,`,
      `with the agents ${fmt(rss1 / 2 ** 20)} MiB. Per agent, by kind of memory (process.memoryUsage before and`,
      `after): V8 heap used ${per(idleMemory.heapUsed, loaded.heapUsed)} KiB, heap reserved ${per(idleMemory.heapTotal, loaded.heapTotal)} KiB,`,
      `external ${per(idleMemory.external, loaded.external)} KiB (of which ArrayBuffers ${per(idleMemory.arrayBuffers, loaded.arrayBuffers)} KiB), the rest`,
      `(native: sockets, libuv, malloc) ${fmt(
        (rss1 - rss0 - (loaded.heapTotal - idleMemory.heapTotal) - (loaded.external - idleMemory.external)) /
          AGENTS /
          1024,
        1,
      )} KiB.`,
    );
    if (median(perAgentKb) > GOAL_KB_PER_AGENT) analysis.push(...memoryAnalysis(idleMemory, loaded));
    if (median(cpu) > GOAL_CPU_PCT) {
      const c = coordinator;
      const p = await profileCoordinator(c, "Coordinator CPU profile over one idle heartbeat interval", () =>
        sleep(idleBeatMs),
      );
      analysis.push(...p.lines);
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await coordinator?.child.stop();
    scratch.cleanup();
  }
  const figures: Figure[] = [
    {
      name: "coordinator RSS per connected agent",
      unit: "KiB",
      values: perAgentKb,
      goal: { op: "<=", value: GOAL_KB_PER_AGENT },
      digits: 1,
    },
    {
      name: `coordinator CPU for ${AGENTS.toLocaleString("en-US")} agents' heartbeats`,
      unit: "% of a core",
      values: cpu,
      goal: { op: "<=", value: GOAL_CPU_PCT },
      digits: 2,
    },
    { name: "heartbeats received", unit: "per s", values: beatsPerS },
  ];
  return {
    id: "connection-scale",
    title: "4. Connection scale",
    method: [
      `A coordinator process (default settings: a heartbeat every ${heartbeatMs / 1000} s from agents with jobs, every`,
      `${idleBeatMs / 1000} s from idle ones; lease 30 s) and ${AGENTS.toLocaleString("en-US")} light agents — bare WebSocket clients that say`,
      "hello and then beat as an idle `phab-dock-ci agent` does, on the intervals the welcome dictates, with a",
      `random phase: a heartbeat every ${idleBeatMs / 1000} s and a ping every ${(IDLE_PING_EVERY * heartbeatMs) / 1000} s (the coordinator answers each with a pong) —`,
      `in ${PROCESSES} processes. After all are connected and one idle interval has passed, ${WINDOWS} windows of one idle interval each: the coordinator's CPU time`,
      "from /proc/<pid>/stat, and its RSS (/proc/<pid>/status) minus its RSS before any agent connected,",
      "divided by the number of agents.",
    ],
    figures,
    notes,
    analysis,
    seconds: (performance.now() - t0) / 1000,
  };
}

function memoryAnalysis(idle: MemoryFigures, loaded: MemoryFigures): string[] {
  const lines = ["V8 heap spaces, used bytes per agent (with the agents minus idle):", ""];
  const spaces = Object.keys(loaded.spaces);
  const rows = spaces
    .map((s) => ({ s, per: ((loaded.spaces[s] ?? 0) - (idle.spaces[s] ?? 0)) / AGENTS / 1024 }))
    .filter((r) => Math.abs(r.per) >= 0.1)
    .sort((a, b) => b.per - a.per);
  lines.push("| heap space | KiB per agent |", "| --- | ---: |");
  for (const r of rows) lines.push(`| ${r.s} | ${fmt(r.per, 1)} |`);
  return lines;
}
