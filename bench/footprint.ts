/**
 * Benchmark 6, footprint: RSS of an idle `phab-dock-ci agent` and an idle `phab-dock-ci coordinator`
 * (the real commands), and the time from starting each to it being ready.
 */
import { benchScript, CLI, spawnNode, type Child } from "./lib/child.js";
import { rssBytes } from "./lib/procfs.js";
import type { BenchResult, Figure } from "./lib/report.js";
import { AGENT_TOKEN, Scratch, sleep, startCliAgent } from "./lib/stack.js";
import { fmt, median } from "./lib/stats.js";

const RUNS = 5;
/** First reading: shortly after start, while the startup's garbage is still around. */
const IDLE_MS = 5_000;
/**
 * Second reading: settled. V8's memory reducer runs about 8 s after allocation stops and gives
 * back the young generation that start-up grew; an agent idles like this for hours between jobs.
 */
const SETTLED_MS = 20_000;
const GOAL_AGENT_MIB = 60;
const MIB = 2 ** 20;

async function steadyRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    readings.push(rssBytes(pid));
    await sleep(200);
  }
  return median(readings);
}

const AGENT_ROLE = [
  "agent/agent.js",
  "agent/docker-backend.js",
  "agent/dockerode-loader.js",
  "agent/git-checkout.js",
  "bin/agent-command.js",
];
const COORDINATOR_ROLE = ["coordinator/coordinator.js", "bin/coordinator-command.js"];
const IMPORT_SETS: Array<[string, string[]]> = [
  ["Node.js alone", []],
  ["the agent's own modules (agent/, bin/agent-command)", AGENT_ROLE],
  ["the coordinator's own modules (coordinator/, bin/coordinator-command)", COORDINATOR_ROLE],
  [
    "what `phab-dock-ci` loads for any command (both roles, `up`, ora)",
    [...AGENT_ROLE, ...COORDINATOR_ROLE, "bin/up-command.js", "ora"],
  ],
  ["dockerode, as the agent loads it (without gRPC and ssh2)", ["agent/dockerode-loader.js"]],
  ["dockerode, all of it", ["dockerode"]],
  ["undici", ["undici"]],
  ["conf", ["conf"]],
  ["ora", ["ora"]],
  ["ws", ["ws"]],
  ["simple-git", ["simple-git"]],
  ["better-sqlite3", ["better-sqlite3"]],
];

async function importCost(specs: string[]): Promise<number> {
  const child = spawnNode(benchScript("import-cost"), {
    name: "import-cost",
    args: specs,
    nodeArgs: ["--expose-gc"],
  });
  const m = await child.waitForEvent("memory", 30_000);
  await child.waitExit(5_000);
  return Number(m["rss"]) / MIB;
}

/** RSS of fresh processes that only load code: how much of the idle agent is its modules. */
async function importTable(idleAgent: number): Promise<string[]> {
  const rows: Array<[string, number]> = [];
  for (const [label, specs] of IMPORT_SETS) rows.push([label, await importCost(specs)]);
  const bare = rows[0]?.[1] ?? 0;
  const lines = [
    "RSS of a fresh Node.js process after importing only the named code (after a full GC), against",
    `the idle agent's ${fmt(idleAgent)} MiB:`,
    "",
    "| loaded | RSS | above Node.js alone |",
    "| --- | ---: | ---: |",
  ];
  for (const [label, rss] of rows) lines.push(`| ${label} | ${fmt(rss)} MiB | ${fmt(rss - bare)} MiB |`);
  return lines;
}

export async function footprint(): Promise<BenchResult> {
  const t0 = performance.now();
  const scratch = new Scratch("footprint");
  const agentRss: number[] = [];
  const agentEarlyRss: number[] = [];
  const coordinatorRss: number[] = [];
  const agentReady: number[] = [];
  const coordinatorReady: number[] = [];
  try {
    for (let r = 0; r < RUNS; r++) {
      let coordinator: Child | null = null;
      let agent: Child | null = null;
      try {
        coordinator = spawnNode(CLI, {
          name: "phab-dock-ci coordinator",
          args: ["coordinator", "--listen", "127.0.0.1:0", "--data", scratch.sub(`coordinator-${r}`)],
          env: { PDCI_AGENT_TOKEN: AGENT_TOKEN },
        });
        const line = await coordinator.waitForLine((l) => /listening on http:\/\//.test(l), 30_000);
        coordinatorReady.push(performance.now() - coordinator.startedAt);
        const url = /listening on (http:\/\/[^;\s]+)/.exec(line)?.[1] ?? "";
        const started = await startCliAgent({
          wsUrl: `${url.replace(/^http/, "ws")}/agent`,
          name: `idle-${r}`,
          workDir: scratch.sub(`agent-${r}`),
          capacity: 1,
        });
        agent = started.child;
        agentReady.push(started.readyMs);
        await sleep(IDLE_MS);
        agentEarlyRss.push((await steadyRss(agent.pid)) / MIB);
        await sleep(SETTLED_MS - IDLE_MS - 1_000);
        agentRss.push((await steadyRss(agent.pid)) / MIB);
        coordinatorRss.push((await steadyRss(coordinator.pid)) / MIB);
      } finally {
        await agent?.stop();
        await coordinator?.stop();
      }
    }
  } finally {
    scratch.cleanup();
  }
  const figures: Figure[] = [
    {
      name: `idle agent RSS, settled (${SETTLED_MS / 1000} s after ready)`,
      unit: "MiB",
      values: agentRss,
      goal: { op: "<=", value: GOAL_AGENT_MIB },
    },
    { name: `idle agent RSS, ${IDLE_MS / 1000} s after ready`, unit: "MiB", values: agentEarlyRss },
    { name: "idle coordinator RSS (one agent connected)", unit: "MiB", values: coordinatorRss },
    { name: "`phab-dock-ci agent` start → ready", unit: "ms", values: agentReady },
    { name: "`phab-dock-ci coordinator` start → listening", unit: "ms", values: coordinatorReady },
  ];
  return {
    id: "footprint",
    title: "6. Footprint",
    method: [
      "The real commands: `phab-dock-ci coordinator` (empty data directory) and `phab-dock-ci agent` (capacity 1,",
      "Docker engine answering), started fresh for each run. Ready is when the agent logs that the coordinator's",
      "welcome arrived (it pings Docker and removes leftovers of an earlier run before dialling); listening is",
      `the coordinator's log line. RSS is /proc VmRSS (median of 5 readings 200 ms apart) ${IDLE_MS / 1000} s and`,
      `${SETTLED_MS / 1000} s after the agent became ready: by then V8's memory reducer (about 8 s after allocation`,
      "stops) has given back the young generation that start-up grew, which is what an agent idling",
      `between jobs holds; the goal applies to that. ${RUNS} runs.`,
    ],
    figures,
    notes: [],
    analysis: await importTable(median(agentRss)),
    seconds: (performance.now() - t0) / 1000,
  };
}
