/**
 * Benchmark 1, end-to-end overhead: a trivial job (fetch a staged tag, build a small image on the
 * busybox base, run it, report `pass` to Conduit) through webhook, coordinator and a real agent,
 * against a shell script doing the same with git, the docker CLI and curl. Both report to the
 * same fake Conduit, whose arrival time of the `pass` message ends the measurement of either.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBaseImage } from "../test/helpers/docker-images.js";
import type { FakeConduit } from "../test/helpers/fake-conduit.js";
import { spawnCommand, type Child } from "./lib/child.js";
import { figureTable, type BenchResult, type Figure } from "./lib/report.js";
import { diffRef, echoDiff, makeStaging, type Files } from "./lib/staging.js";
import { DOCKER_CLI, sleep, startRealStack, type RealStack } from "./lib/stack.js";
import { fmt, median } from "./lib/stats.js";
import { enc, getJson } from "./lib/webhook-client.js";

const SERIAL = 10;
const BURST = 40;
const SLOTS = 4;
const BURST_RUNS = 2;
const DIAGNOSTIC = 3;
const JOB_TIMEOUT_MS = 120_000;
const GOAL_SERIAL_RATIO = 1.1;
const GOAL_BURST_RATIO = 0.95;

/** The baseline: what one would write instead of running a CI service. */
const SCRIPT = `#!/usr/bin/env bash
# Baseline of the end-to-end benchmark: one job by hand with git, the docker CLI and curl.
# Arguments: staging-uri ref target-phid conduit-url conduit-token work-dir times-file
set -euo pipefail
staging=$1 ref=$2 target=$3 conduit=$4 token=$5 work=$6 times=$7
docker=\${DOCKER:-docker}
export DOCKER_BUILDKIT=0
stamp() { echo "$1 $EPOCHREALTIME" >> "$times"; }
stamp start
git init -q "$work"
git -C "$work" fetch -q --no-tags "$staging" "+$ref:refs/job"
stamp fetched
tag="pdci-baseline-$(basename "$work"):latest"
result=pass
git -C "$work" archive --format=tar refs/job | "$docker" build -q -t "$tag" - > "$work.log" 2>&1 || result=fail
stamp built
if [ "$result" = pass ]; then "$docker" run --rm "$tag" >> "$work.log" 2>&1 || result=fail; fi
stamp ran
if [ "$result" = fail ]; then cat "$work.log" >&2; fi
# --no-prune keeps the image's parent layers, as the agent does: pruning them races the build cache
# lookup of a build running next to this one ("unable to find image sha256:...").
"$docker" rmi -f --no-prune "$tag" > /dev/null 2>&1 || true
rm -rf "$work"
stamp cleaned
params=$(printf '{"receiver":"%s","type":"%s","__conduit__":{"token":"%s"}}' "$target" "$result" "$token")
curl -sS --fail -o /dev/null "$conduit/api/harbormaster.sendmessage" \\
  --data-urlencode "params=$params" --data-urlencode "output=json" --data-urlencode "__conduit__=1"
stamp reported
`;

/** Final messages as the fake Conduit received them. */
class Finals {
  private seen = 0;
  private readonly finals = new Map<string, { at: number; type: string }>();

  constructor(private readonly conduit: FakeConduit) {}

  private scan(): void {
    const calls = this.conduit.calls;
    for (; this.seen < calls.length; this.seen++) {
      const c = calls[this.seen];
      if (!c || c.method !== "harbormaster.sendmessage") continue;
      const type = String(c.params["type"]);
      if (type === "pass" || type === "fail")
        this.finals.set(String(c.params["receiver"]), { at: c.at, type });
    }
  }

  /** Wall-clock ms at which the target's final message arrived; throws unless it is a pass. */
  async wait(phid: string, timeoutMs = JOB_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.scan();
      const f = this.finals.get(phid);
      if (f) {
        if (f.type !== "pass") throw new Error(`${phid} reported ${f.type}`);
        return f.at;
      }
      if (Date.now() > deadline) throw new Error(`no final message for ${phid} within ${timeoutMs} ms`);
      await sleep(5);
    }
  }
}

interface Env extends RealStack {
  finals: Finals;
  staging: string;
  script: string;
  next: number;
}

const newTarget = (env: Env, kind: string): { phid: string; n: number } => {
  const n = ++env.next;
  const phid = `PHID-HMBT-e2e${kind}${n}`;
  env.conduit.addTarget({ phid });
  return { phid, n };
};

async function oursOnce(env: Env): Promise<number> {
  const { phid, n } = newTarget(env, "o");
  const t0 = Date.now();
  await env.client.post(`/harbormaster?target=${phid}&staging=${enc(env.staging)}&ref=${diffRef(n)}`);
  return (await env.finals.wait(phid)) - t0;
}

function scriptChild(env: Env, n: number, phid: string, times: string): Child {
  return spawnCommand(
    "bash",
    [
      env.script,
      env.staging,
      diffRef(n),
      phid,
      env.conduit.url,
      env.conduit.token,
      join(env.scratch.dir, `work-${n}`),
      times,
    ],
    { name: `baseline ${n}`, env: { DOCKER: DOCKER_CLI, LC_ALL: "C" } },
  );
}

/** Runs the script for one new target; returns when it started and when its pass arrived. */
async function scriptTimed(env: Env, times: string): Promise<{ t0: number; at: number }> {
  const { phid, n } = newTarget(env, "s");
  const t0 = Date.now();
  const child = scriptChild(env, n, phid, times);
  return { t0, at: await scriptDone(env, child, phid) };
}

/** Waits for a run of the script and its final message; a failure says what the script printed. */
async function scriptDone(env: Env, child: Child, phid: string): Promise<number> {
  const code = await child.waitExit(JOB_TIMEOUT_MS);
  if (code !== 0) throw new Error(`the baseline script failed (${String(code)}):\n${child.tailText()}`);
  try {
    return await env.finals.wait(phid);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the script printed:\n${child.tailText()}`);
  }
}

async function scriptOnce(env: Env): Promise<number> {
  const { t0, at } = await scriptTimed(env, join(env.scratch.dir, "times-discard"));
  return at - t0;
}

async function oursBurst(env: Env): Promise<number> {
  const targets = Array.from({ length: BURST }, () => newTarget(env, "o"));
  const t0 = Date.now();
  for (const { phid, n } of targets)
    await env.client.post(`/harbormaster?target=${phid}&staging=${enc(env.staging)}&ref=${diffRef(n)}`);
  const ends = await Promise.all(targets.map(({ phid }) => env.finals.wait(phid)));
  return BURST / ((Math.max(...ends) - t0) / 60_000);
}

async function scriptBurst(env: Env): Promise<number> {
  const targets = Array.from({ length: BURST }, () => newTarget(env, "s"));
  const t0 = Date.now();
  let next = 0;
  const ends: number[] = [];
  const slot = async () => {
    while (next < targets.length) {
      const { phid, n } = targets[next++] as { phid: string; n: number };
      const child = scriptChild(env, n, phid, join(env.scratch.dir, "times-discard"));
      ends.push(await scriptDone(env, child, phid));
    }
  };
  await Promise.all(Array.from({ length: SLOTS }, slot));
  return BURST / ((Math.max(...ends) - t0) / 60_000);
}

const PHASES = [
  "webhook → job started (dispatch, accept) / bash start",
  "fetch and check out",
  "docker build",
  "docker run",
  "clean up (image, workspace)",
  "report to Conduit",
  "total",
];

const isoMs = (v: unknown): number => (typeof v === "string" ? Date.parse(v) : Number.NaN);

/**
 * One job of ours with its phases: start and finish from the job's own timestamps, the phase
 * changes in between from polling the job API every 10 ms (diagnostic runs only).
 */
async function oursPhases(env: Env): Promise<number[]> {
  const { phid, n } = newTarget(env, "d");
  const t0 = Date.now();
  const answer = await env.client.post(
    `/harbormaster?target=${phid}&staging=${enc(env.staging)}&ref=${diffRef(n)}`,
  );
  const seen: Record<string, number> = {};
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  let job: Record<string, unknown> = {};
  for (;;) {
    job = await getJson(`${env.coordinator.url}/api/jobs/${answer.jobId}`);
    const phase = String(job["phase"] ?? "");
    if (phase && seen[phase] === undefined) seen[phase] = Date.now();
    if (job["state"] === "finished" || Date.now() > deadline) break;
    await sleep(10);
  }
  const at = await env.finals.wait(phid);
  const started = isoMs(job["startedAt"]);
  const finished = isoMs(job["finishedAt"]);
  const cleaning = seen["cleaning"] ?? finished;
  const running = seen["running"] ?? cleaning;
  const building = seen["building"] ?? running;
  return [
    started - t0,
    building - started,
    running - building,
    cleaning - running,
    finished - cleaning,
    at - finished,
    at - t0,
  ];
}

async function scriptPhases(env: Env): Promise<number[]> {
  const times = join(env.scratch.dir, `times-${env.next + 1}`);
  const { t0, at } = await scriptTimed(env, times);
  const stamps = new Map(
    readFileSync(times, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([k, v]) => [k ?? "", Number(v) * 1000] as const),
  );
  const s = (k: string) => stamps.get(k) ?? Number.NaN;
  return [
    s("start") - t0,
    s("fetched") - s("start"),
    s("built") - s("fetched"),
    s("ran") - s("built"),
    s("cleaned") - s("ran"),
    at - s("cleaned"),
    at - t0,
  ];
}

export async function e2eOverhead(): Promise<BenchResult> {
  const t0 = performance.now();
  const base = await ensureBaseImage();
  const ours: number[] = [];
  const script: number[] = [];
  const oursBursts: number[] = [];
  const scriptBursts: number[] = [];
  const phases: Array<{ ours: number[]; script: number[] }> = [];
  const stack = await startRealStack({ name: "e2e", capacity: SLOTS });
  try {
    const count = 2 + 2 * SERIAL + 2 * BURST * BURST_RUNS + 2 * DIAGNOSTIC + 10;
    const diffs = new Map<number, Files>();
    for (let n = 1; n <= count; n++) diffs.set(n, echoDiff(base, n));
    const staging = makeStaging(stack.scratch.dir, diffs);
    const scriptFile = join(stack.scratch.dir, "baseline.sh");
    writeFileSync(scriptFile, SCRIPT, { mode: 0o755 });
    const env: Env = { ...stack, finals: new Finals(stack.conduit), staging, script: scriptFile, next: 0 };
    // Warm-up: the first build after a while is slow for either side; the agent creates its mirror.
    await oursOnce(env);
    await scriptOnce(env);
    for (let i = 0; i < SERIAL; i++) {
      // Alternate who goes first, so a drift of the machine does not favour one side.
      if (i % 2 === 0) {
        ours.push(await oursOnce(env));
        script.push(await scriptOnce(env));
      } else {
        script.push(await scriptOnce(env));
        ours.push(await oursOnce(env));
      }
    }
    console.log(`   serial: ours ${fmt(median(ours))} ms, script ${fmt(median(script))} ms`);
    for (let i = 0; i < BURST_RUNS; i++) {
      if (i % 2 === 0) {
        scriptBursts.push(await scriptBurst(env));
        oursBursts.push(await oursBurst(env));
      } else {
        oursBursts.push(await oursBurst(env));
        scriptBursts.push(await scriptBurst(env));
      }
      console.log(
        `   burst ${i + 1}: ours ${fmt(oursBursts.at(-1) ?? 0)}, script ${fmt(scriptBursts.at(-1) ?? 0)} builds/min`,
      );
    }
    for (let i = 0; i < DIAGNOSTIC; i++)
      phases.push({ ours: await oursPhases(env), script: await scriptPhases(env) });
  } finally {
    await stack.close();
  }

  const serialRatios = ours.map((o, i) => o / (script[i] ?? Number.NaN));
  const burstRatios = oursBursts.map((o, i) => o / (scriptBursts[i] ?? Number.NaN));
  const figures: Figure[] = [
    { name: "serial: webhook → pass at Conduit, ours", unit: "ms", values: ours },
    { name: "serial: same job by the script", unit: "ms", values: script },
    {
      name: "serial overhead ratio (ours / script, per pair)",
      unit: "×",
      values: serialRatios,
      goal: { op: "<=", value: GOAL_SERIAL_RATIO },
      digits: 3,
    },
    { name: `burst of ${BURST}, ${SLOTS} slots: ours`, unit: "builds/min", values: oursBursts },
    { name: `burst of ${BURST}, ${SLOTS} at a time: the script`, unit: "builds/min", values: scriptBursts },
    {
      name: "burst throughput ratio (ours / script, per pair)",
      unit: "×",
      values: burstRatios,
      goal: { op: ">=", value: GOAL_BURST_RATIO },
      digits: 3,
    },
  ];
  const breakdown: Figure[] = PHASES.flatMap((k, i) => [
    { name: `${k}: ours`, unit: "ms", values: phases.map((p) => p.ours[i] ?? Number.NaN) },
    { name: `${k}: script`, unit: "ms", values: phases.map((p) => p.script[i] ?? Number.NaN) },
  ]);
  const analysis = [
    `Phases of ${DIAGNOSTIC} further serial jobs each. Ours: the job's start and finish times from the job`,
    "API, the phase changes in between from polling it every 10 ms (so those borders are ±10 ms). The",
    "script: timestamps it writes between its steps; it has no dispatch, its first row is bash starting.",
    "",
    ...figureTable(breakdown),
    "",
    `Differences of the medians, ours − script: ${PHASES.slice(0, -1)
      .map((k, i) => ({
        k,
        d: median(phases.map((p) => p.ours[i] ?? 0)) - median(phases.map((p) => p.script[i] ?? 0)),
      }))
      .sort((a, b) => b.d - a.d)
      .map(({ k, d }) => `${k} ${d >= 0 ? "+" : "−"}${fmt(Math.abs(d))} ms`)
      .join(", ")}.`,
    "Ours builds one step more: the label that makes each job's image its own (a container and a commit).",
    "Without it, two jobs whose builds end in the same cached image share that image, and the first",
    "job's clean-up deletes it under the second.",
  ];
  return {
    id: "e2e-overhead",
    title: "1. End-to-end overhead",
    method: [
      "Every job builds its own staged diff (a Dockerfile `FROM pdci-busybox:latest` that copies a script",
      "printing the diff's number, so no two builds share a cached layer). Ours: a webhook to a",
      "coordinator process, `phab-dock-ci agent` (capacity 4, real git and Docker) builds and runs it,",
      "the coordinator reports `pass` to the fake Conduit (test/helpers/fake-conduit.ts), which also",
      "receives the job link artifact first. The script: `git init` + `git fetch` of the tag, `git archive |",
      "docker build -`, `docker run --rm`, `docker rmi --no-prune` (the agent too keeps a job image's",
      "parent layers: a build beside it may be reading them as cache), and `curl` of",
      "harbormaster.sendmessage to the same fake. Wall time from the webhook (or starting bash) to the",
      "`pass` arriving at the fake.",
      `Serial: one warm-up each, then ${SERIAL} pairs, alternating who goes first; the ratio is per pair.`,
      `Burst: ${BURST} jobs at once with ${SLOTS} slots (ours: one agent of capacity ${SLOTS}; the script: ${SLOTS} at a time),`,
      `${BURST_RUNS} runs each, alternating; builds per minute from the first webhook to the last pass.`,
    ],
    figures,
    notes: [],
    analysis,
    seconds: (performance.now() - t0) / 1000,
  };
}
