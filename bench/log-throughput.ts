/**
 * Benchmark 5, log throughput: a container writes 1 GiB to stdout; the rate at which it lands in
 * the coordinator's durable job log, and the peak RSS of the agent and the coordinator meanwhile.
 * Real pieces throughout: `phab-dock-ci agent` with git and Docker, a coordinator process.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureBaseImage } from "../test/helpers/docker-images.js";
import { benchScript, type Child } from "./lib/child.js";
import { ConduitSink, SINK_TOKEN } from "./lib/conduit-sink.js";
import { profileMarkdown, summarizeProfile } from "./lib/cpuprofile.js";
import { profileCoordinator, profileDir, profileFiles } from "./lib/profiling.js";
import { peakRssBytes, RssSampler } from "./lib/procfs.js";
import type { BenchResult, Figure } from "./lib/report.js";
import { diffRef, makeStaging, type Files } from "./lib/staging.js";
import {
  DOCKER_CLI,
  Scratch,
  sleep,
  startCliAgent,
  startCoordinatorProcess,
  type CoordinatorProcess,
} from "./lib/stack.js";
import { fmt, median } from "./lib/stats.js";
import { enc, WebhookClient } from "./lib/webhook-client.js";

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const CHUNK_MIB = 16;
const RUNS = 3;
const JOB_TIMEOUT_MS = 240_000;
const GOAL_MIB_PER_S = 100;
const GOAL_RSS_MIB = 150;

/** The image writes 1 GiB of text: a 16 MiB block it makes first, 64 times. */
function logDiff(base: string): Files {
  const line = "phab-dock-ci log throughput 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return {
    Dockerfile: `FROM ${base}\nCOPY run.sh /run.sh\nCMD ["sh", "/run.sh"]\n`,
    "run.sh": [
      `yes "${line}" | head -c ${CHUNK_MIB * MIB} > /chunk`,
      "i=0",
      `while [ $i -lt ${GIB / (CHUNK_MIB * MIB)} ]; do cat /chunk; i=$((i+1)); done`,
      "",
    ].join("\n"),
  };
}

interface RunFigures {
  mibPerS: number;
  agentPeakMiB: number;
  coordinatorPeakMiB: number;
  streamedBytes: number;
  /** The agent's own view of its peaks (bench/lib/memory-probe.ts), in MiB. */
  probe: Record<string, number>;
}

/** Follows the size of the job's log file; returns the streaming rate of the container's part. */
class LogWatch {
  private readonly samples: Array<{ t: number; size: number }> = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly file: string) {
    this.timer = setInterval(() => this.sample(), 20);
  }

  private sample(): void {
    try {
      this.samples.push({ t: performance.now(), size: statSync(this.file).size });
    } catch {
      // not created yet
    }
  }

  /** From the first sample past 1 MiB (the build output is far smaller) to the first at the end. */
  rate(): { mibPerS: number; bytes: number; startedAt: number; endedAt: number } {
    clearInterval(this.timer);
    this.sample();
    const final = this.samples.at(-1)?.size ?? 0;
    const a = this.samples.find((s) => s.size >= MIB);
    const b = this.samples.find((s) => s.size >= final - 4096);
    if (!a || !b || b.t <= a.t) throw new Error(`the log did not grow as expected (final size ${final})`);
    return {
      mibPerS: (b.size - a.size) / MIB / ((b.t - a.t) / 1000),
      bytes: final,
      startedAt: a.t,
      endedAt: b.t,
    };
  }
}

async function streamOnce(
  scratch: Scratch,
  staging: string,
  sink: ConduitSink,
  run: string,
  profile: boolean,
): Promise<RunFigures & { analysis: string[] }> {
  let coordinator: CoordinatorProcess | null = null;
  let agent: Child | null = null;
  const analysis: string[] = [];
  const dataDir = scratch.sub(`coordinator-${run}`);
  const agentProfiles = join(profileDir(), `agent-${Date.now()}`);
  if (profile) mkdirSync(agentProfiles, { recursive: true });
  try {
    coordinator = await startCoordinatorProcess({ dataDir, conduit: { url: sink.url, token: SINK_TOKEN } });
    const started = await startCliAgent({
      wsUrl: coordinator.wsUrl,
      name: `log-${run}`,
      workDir: scratch.sub(`agent-${run}`),
      capacity: 1,
      nodeArgs: [
        "--import",
        pathToFileURL(benchScript("memory-probe")).href,
        ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${agentProfiles}`] : []),
      ],
    });
    agent = started.child;
    const sampler = new RssSampler([coordinator.pid, agent.pid]);
    const client = new WebhookClient(coordinator.url, 1);
    const phid = `PHID-HMBT-log${run}`;
    const answer = await client.post(
      `/harbormaster?target=${phid}&staging=${enc(staging)}&ref=${diffRef(1)}`,
    );
    client.close();
    const watch = new LogWatch(join(dataDir, "logs", `${answer.jobId}.log`));
    const c = coordinator;
    const waitDone = async () => {
      if (!(await sink.until(() => sink.finals.has(phid), JOB_TIMEOUT_MS)))
        throw new Error(`the 1 GiB job did not finish within ${JOB_TIMEOUT_MS / 1000} s`);
    };
    if (profile) {
      const p = await profileCoordinator(c, "Coordinator CPU profile while streaming 1 GiB", waitDone);
      analysis.push(...p.lines, "");
    } else {
      await waitDone();
    }
    const rate = watch.rate();
    const peaks = sampler.stop();
    const probeAnswer = agent.waitForEvent("probe", 10_000);
    agent.signal("SIGUSR2");
    const probe = Object.fromEntries(
      Object.entries(await probeAnswer)
        .filter(([k]) => k !== "ev")
        .map(([k, v]) => [k, Number(v) / MIB]),
    );
    const agentPeak = Math.max(peaks.get(agent.pid) ?? 0, peakRssBytes(agent.pid));
    const coordinatorPeak = Math.max(peaks.get(coordinator.pid) ?? 0, peakRssBytes(coordinator.pid));
    return {
      mibPerS: rate.mibPerS,
      agentPeakMiB: agentPeak / MIB,
      coordinatorPeakMiB: coordinatorPeak / MIB,
      streamedBytes: rate.bytes,
      probe,
      analysis,
    };
  } finally {
    await agent?.stop();
    await coordinator?.child.stop();
    if (profile) {
      await sleep(200);
      const written = readdirSync(agentProfiles).filter((f) => f.endsWith(".cpuprofile"));
      if (written[0]) {
        const file = join(agentProfiles, written[0]);
        profileFiles.push(file);
        analysis.push(
          ...profileMarkdown("Agent CPU profile of the same run (node --cpu-prof)", summarizeProfile(file)),
        );
      }
    }
  }
}

/** The same container through the docker CLI to /dev/null: what the engine's attach path gives. */
function dockerCliRate(contextDir: string, tag: string): number {
  execFileSync(DOCKER_CLI, ["build", "-q", "-t", tag, contextDir], {
    env: { ...process.env, DOCKER_BUILDKIT: "0" },
  });
  try {
    const t0 = performance.now();
    execFileSync("bash", ["-c", `"${DOCKER_CLI}" run --rm --log-driver none "${tag}" > /dev/null`]);
    return GIB / MIB / ((performance.now() - t0) / 1000);
  } finally {
    execFileSync(DOCKER_CLI, ["rmi", "-f", tag], { stdio: "ignore" });
  }
}

const probeFigure = (runs: RunFigures[], key: string): string =>
  fmt(median(runs.map((r) => r.probe[key] ?? Number.NaN)));

export async function logThroughput(): Promise<BenchResult> {
  const t0 = performance.now();
  const base = await ensureBaseImage();
  const scratch = new Scratch("log");
  const sink = await ConduitSink.start();
  const runs: RunFigures[] = [];
  const reference: number[] = [];
  const analysis: string[] = [];
  try {
    const files = logDiff(base);
    const staging = makeStaging(scratch.dir, new Map([[1, files]]));
    const context = scratch.sub("context");
    for (const [name, content] of Object.entries(files)) writeFileSync(join(context, name), content);
    for (let r = 0; r < RUNS; r++) {
      const result = await streamOnce(scratch, staging, sink, `${r}`, false);
      runs.push(result);
      scratch.cleanupSub(`coordinator-${r}`);
      console.log(
        `   run ${r + 1}: ${fmt(result.mibPerS)} MiB/s, agent peak ${fmt(result.agentPeakMiB)} MiB, coordinator peak ${fmt(result.coordinatorPeakMiB)} MiB`,
      );
      reference.push(dockerCliRate(context, `pdci-bench-log-ref-${r}:latest`));
    }
    const missed =
      median(runs.map((r) => r.mibPerS)) < GOAL_MIB_PER_S ||
      median(runs.map((r) => r.agentPeakMiB)) > GOAL_RSS_MIB ||
      median(runs.map((r) => r.coordinatorPeakMiB)) > GOAL_RSS_MIB;
    if (missed) {
      analysis.push(
        "Inside the agent (a probe preloaded with `--import`; medians over the runs of each run's peak):",
        `V8 heap used ${probeFigure(runs, "heapUsed")} MiB, external memory ${probeFigure(runs, "external")} MiB of which`,
        `ArrayBuffers ${probeFigure(runs, "arrayBuffers")} MiB, and the most bytes one WebSocket held unsent right`,
        `after a send (ws \`bufferedAmount\`) ${probeFigure(runs, "wsBuffered")} MiB.`,
        "",
      );
      analysis.push(...(await streamOnce(scratch, staging, sink, "profiled", true)).analysis);
    }
  } finally {
    await sink.close();
    scratch.cleanup();
  }
  const figures: Figure[] = [
    {
      name: "container stdout → durable coordinator log",
      unit: "MiB/s",
      values: runs.map((r) => r.mibPerS),
      goal: { op: ">=", value: GOAL_MIB_PER_S },
    },
    {
      name: "agent peak RSS while streaming",
      unit: "MiB",
      values: runs.map((r) => r.agentPeakMiB),
      goal: { op: "<=", value: GOAL_RSS_MIB },
    },
    {
      name: "coordinator peak RSS while streaming",
      unit: "MiB",
      values: runs.map((r) => r.coordinatorPeakMiB),
      goal: { op: "<=", value: GOAL_RSS_MIB },
    },
    { name: "reference: same container, docker CLI → /dev/null", unit: "MiB/s", values: reference },
  ];
  return {
    id: "log-throughput",
    title: "5. Log throughput",
    method: [
      "`phab-dock-ci agent` (git, Docker) and a coordinator process, both started fresh for each run. The job's",
      `image writes 1 GiB of text to stdout (a ${CHUNK_MIB} MiB block, ${GIB / (CHUNK_MIB * MIB)} times). The rate is taken from the size of`,
      "the coordinator's log file (polled every 20 ms), from when it passes 1 MiB to when it reaches its final",
      "size; the coordinator fsyncs appended bytes before acknowledging them. Peak RSS is the larger of",
      "/proc VmHWM and 100 ms samples of VmRSS. For reference, the same image run with `docker run` writing",
      `to /dev/null (the docker CLI's own attach path, container start included). ${RUNS} runs.`,
    ],
    figures,
    notes: [`Each run stored ${fmt((runs[0]?.streamedBytes ?? 0) / MIB)} MiB of log.`],
    analysis,
    seconds: (performance.now() - t0) / 1000,
  };
}
