/**
 * Benchmark 7, builds during a prune: `docker image prune -f`, as the README suggests from cron,
 * running while a real agent builds. The engine fails a build when an image it reads (as cache, or
 * its own last step) is removed at that moment; the agent builds again. This counts the jobs that
 * still pass and how many needed a rebuild.
 */
import { ensureBaseImage } from "../test/helpers/docker-images.js";
import { spawnCommand, type Child } from "./lib/child.js";
import type { BenchResult, Figure } from "./lib/report.js";
import { diffRef, echoDiff, makeStaging, type Files } from "./lib/staging.js";
import { DOCKER_CLI, sleep, startRealStack, waitForJob, type RealStack } from "./lib/stack.js";
import { enc } from "./lib/webhook-client.js";

const RUNS = 2;
/** Jobs run before each burst: each leaves the untagged layers of its build for the prune. */
const SEED = 150;
const BURST = 80;
const SLOTS = 4;
/** The prune starts this long after the burst's webhooks, when builds are under way. */
const PRUNE_AFTER_MS = 3_000;
const JOB_TIMEOUT_MS = 300_000;

interface Stack extends RealStack {
  staging: string;
  next: number;
}

/** Posts `count` jobs of new diffs; returns their job ids. */
async function submit(s: Stack, count: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const n = ++s.next;
    const phid = `PHID-HMBT-prune${n}`;
    s.conduit.addTarget({ phid });
    const answer = await s.client.post(
      `/harbormaster?target=${phid}&staging=${enc(s.staging)}&ref=${diffRef(n)}`,
    );
    if (answer.status !== 202) throw new Error(`webhook for diff ${n} answered ${answer.status}`);
    ids.push(answer.jobId);
  }
  return ids;
}

interface JobTally {
  passed: number;
  rebuilt: number;
  withoutCache: number;
}

async function tally(s: Stack, ids: number[]): Promise<JobTally> {
  const t: JobTally = { passed: 0, rebuilt: 0, withoutCache: 0 };
  for (const id of ids) {
    const job = await waitForJob(s.coordinator.url, id, JOB_TIMEOUT_MS);
    const log = await (await fetch(`${s.coordinator.url}/api/jobs/${id}/log`)).text();
    if (job["result"] === "pass") t.passed += 1;
    if (log.includes("; building again")) t.rebuilt += 1;
    if (log.includes("building again without it")) t.withoutCache += 1;
  }
  return t;
}

/** Runs one prune; resolves with the number of images it deleted and the seconds it took. */
async function prune(): Promise<{ deleted: number; seconds: number }> {
  const t0 = performance.now();
  let deleted = 0;
  const child: Child = spawnCommand(DOCKER_CLI, ["image", "prune", "-f"], { name: "docker image prune" });
  child.onLine((line) => {
    if (/^deleted: sha256:/i.test(line)) deleted += 1;
  });
  const code = await child.waitExit(JOB_TIMEOUT_MS);
  if (code !== 0) throw new Error(`docker image prune failed (${String(code)}):\n${child.tailText()}`);
  return { deleted, seconds: (performance.now() - t0) / 1000 };
}

export async function pruneBurst(): Promise<BenchResult> {
  const t0 = performance.now();
  const base = await ensureBaseImage();
  const passed: number[] = [];
  const rebuilt: number[] = [];
  const withoutCache: number[] = [];
  const deleted: number[] = [];
  const pruneSeconds: number[] = [];
  const stack = await startRealStack({ name: "prune", capacity: SLOTS });
  try {
    const diffs = new Map<number, Files>();
    for (let n = 1; n <= RUNS * (SEED + BURST); n++) diffs.set(n, echoDiff(base, n));
    const s: Stack = { ...stack, staging: makeStaging(stack.scratch.dir, diffs), next: 0 };
    for (let run = 0; run < RUNS; run++) {
      const seeded = await tally(s, await submit(s, SEED));
      if (seeded.passed !== SEED) throw new Error(`only ${seeded.passed} of ${SEED} seed jobs passed`);
      const ids = await submit(s, BURST);
      await sleep(PRUNE_AFTER_MS);
      const pruned = await prune();
      const burst = await tally(s, ids);
      passed.push((100 * burst.passed) / BURST);
      rebuilt.push(burst.rebuilt);
      withoutCache.push(burst.withoutCache);
      deleted.push(pruned.deleted);
      pruneSeconds.push(pruned.seconds);
      console.log(
        `   run ${run + 1}: ${burst.passed}/${BURST} passed, ${burst.rebuilt} built again ` +
          `(${burst.withoutCache} without cache); the prune deleted ${pruned.deleted} images in ${pruned.seconds.toFixed(1)} s`,
      );
    }
  } finally {
    await stack.close();
  }
  const figures: Figure[] = [
    { name: "jobs of the burst that passed", unit: "%", values: passed },
    { name: "jobs built again after losing an image", unit: "jobs", values: rebuilt },
    { name: "of them, built the third time without the cache", unit: "jobs", values: withoutCache },
    { name: "images the prune deleted", unit: "images", values: deleted, digits: 0 },
    { name: "time the prune took", unit: "s", values: pruneSeconds },
  ];
  return {
    id: "prune-burst",
    title: "7. Builds during a prune",
    method: [
      `\`phab-dock-ci agent\` (capacity ${SLOTS}, real git and Docker) and a coordinator process. Each run first`,
      `passes ${SEED} jobs (the diffs of benchmark 1: every build leaves two untagged layers, as the agent`,
      `keeps a job image's parents), then posts ${BURST} more and, ${PRUNE_AFTER_MS / 1000} s later, runs`,
      "`docker image prune -f` once, as from cron. The engine fails a build when an image it reads",
      "(cache, or its own last step) is removed at that moment; the agent then builds again after 1 s,",
      `and once more without the cache. Counted from the jobs' results and logs. ${RUNS} runs; no goal`,
      "is set, no job should fail.",
    ],
    figures,
    notes: [],
    analysis: [],
    seconds: (performance.now() - t0) / 1000,
  };
}
