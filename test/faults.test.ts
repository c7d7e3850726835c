import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test, type TestContext } from "node:test";
import Dockerode from "dockerode";
import { imageRepository, LABEL_AGENT, LABEL_JOB } from "../agent/job-runner.js";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import type { FakeConduit } from "./helpers/fake-conduit.js";
import { freePort, startAgentProc, startCoordinatorProc, type Proc } from "./helpers/processes.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  assertResults,
  startFakeConduit,
  tempDir,
  uniqueName,
  waitFor,
  waitForJob,
  waitForJobWhere,
  webhook,
} from "./helpers/stack.js";

/**
 * The fault suite: real coordinator and agent processes, real dockerd and git, the fake Conduit.
 * Each scenario breaks something for real and then checks the invariants: exactly one final
 * message per target, the right result, a complete log, no leftover containers.
 */

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** Deterministic output: `rounds` batches of `seq 1 per`, `pause` seconds apart. */
function spewScript(rounds: number, per: number, pause: number): string {
  return `i=0\nwhile [ $i -lt ${rounds} ]; do seq 1 ${per}; i=$((i+1)); sleep ${pause}; done\necho done-marker\n`;
}

function spewOutput(rounds: number, per: number): string {
  const batch = Array.from({ length: per }, (_, i) => String(i + 1)).join("\n") + "\n";
  return batch.repeat(rounds) + "done-marker\n";
}

interface Stack {
  /** Appended to agent names: container labels carry them, and job ids repeat across tests. */
  suffix: string;
  conduit: FakeConduit;
  docker: Dockerode;
  staging: string;
  port: number;
  url: string;
  dataDir: string;
  coordinator: Proc;
}

async function stack(
  t: TestContext,
  scripts: Record<number, string>,
  opts: { retries?: number } = {},
): Promise<Stack> {
  const docker = await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(
    t,
    Object.fromEntries(Object.entries(scripts).map(([n, s]) => [n, shellDiff(base, s)])),
  );
  const conduit = await startFakeConduit(t);
  const port = await freePort();
  const dataDir = tempDir(t, "pdci-coord-");
  const coordinator = await startCoordinatorProc(t, {
    port,
    dataDir,
    conduitUrl: conduit.url,
    conduitToken: conduit.token,
    retries: opts.retries ?? 1,
  });
  const suffix = uniqueName("f");
  return { suffix, conduit, docker, staging, port, url: `http://127.0.0.1:${port}`, dataDir, coordinator };
}

function restartCoordinator(t: TestContext, s: Stack, retries = 1): Promise<Proc> {
  return startCoordinatorProc(t, {
    port: s.port,
    dataDir: s.dataDir,
    conduitUrl: s.conduit.url,
    conduitToken: s.conduit.token,
    retries,
  });
}

function agent(t: TestContext, s: Stack, name: string, workDir = tempDir(t, "pdci-agent-")): Promise<Proc> {
  return startAgentProc(t, { url: `ws://127.0.0.1:${s.port}/agent`, name: `${name}-${s.suffix}`, workDir });
}

async function submit(s: Stack, target: string, diff: number): Promise<number> {
  s.conduit.addTarget({ phid: target });
  const res = await webhook(
    s.url,
    `/harbormaster?target=${target}&staging=${s.staging}&ref=refs/tags/phabricator/diff/${diff}`,
  );
  assert.equal(res.status, 202);
  return Number(res.body["jobId"]);
}

function jobWhere(s: Stack, id: number, what: string, pred: (j: Record<string, unknown>) => boolean) {
  return waitForJobWhere(s.url, id, what, pred, 30_000);
}

/** The whole log, page by page as a client of the log API reads it. */
async function log(s: Stack, id: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let offset = 0;
  for (let page = 0; page < 1000; page++) {
    const res = await fetch(`${s.url}/api/jobs/${id}/log?offset=${offset}`);
    const body = Buffer.from(await res.arrayBuffer());
    parts.push(body);
    offset += body.length;
    if (offset >= Number(res.headers.get("x-log-length")) || body.length === 0) break;
  }
  return Buffer.concat(parts);
}

/** The container's own output inside the job log (between the runner's banners). */
function containerOutput(logBytes: Buffer): Buffer {
  const head = "running the image's default command\n";
  const start = logBytes.lastIndexOf(head);
  const end = logBytes.lastIndexOf("\n--- phab-dock-ci: exit code");
  return logBytes.subarray(start + head.length, end);
}

/** Containers of this test's agents for the job, running or not. */
async function leftovers(s: Stack, id: number): Promise<number> {
  let n = 0;
  for (const name of ["agent-a", "agent-b"]) {
    const label = [`${LABEL_JOB}=${id}`, `${LABEL_AGENT}=${name}-${s.suffix}`];
    n += (await s.docker.listContainers({ all: true, filters: { label } })).length;
  }
  return n;
}

/** Exactly one final message, of the expected type, and nothing after it. */
async function assertOneFinal(s: Stack, target: string, type: "pass" | "fail"): Promise<void> {
  await waitFor(
    `final message for ${target}`,
    () => s.conduit.messages(target).some((m) => m.type === "pass" || m.type === "fail"),
    30_000,
  );
  await new Promise((r) => setTimeout(r, 700));
  const finals = s.conduit.messages(target).filter((m) => m.type === "pass" || m.type === "fail");
  assert.deepEqual(
    finals.map((m) => m.type),
    [type],
    `exactly one final message for ${target}`,
  );
}

test("agent killed -9 mid-job, a second agent available: the job runs again there, once", async (t) => {
  const s = await stack(t, { 1: spewScript(10, 100, 0.3) });
  const workA = tempDir(t, "pdci-agent-a-");
  const a = await agent(t, s, "agent-a", workA);
  const id = await submit(s, "PHID-HMBT-killagent", 1);
  await jobWhere(
    s,
    id,
    "running on agent-a",
    (j) => j["agent"] === `agent-a-${s.suffix}` && j["phase"] === "running" && Number(j["logBytes"]) > 0,
  );
  await agent(t, s, "agent-b");

  await a.kill9();
  const died = Date.now();
  await jobWhere(
    s,
    id,
    "running on agent-b",
    (j) => j["agent"] === `agent-b-${s.suffix}` && j["state"] === "running",
  );
  const moved = Date.now() - died;
  t.diagnostic(`agent death to job start on another agent: ${moved} ms (lease 5 s)`);

  const job = await waitForJob(s.url, id);
  await assertResults(s.url, [job], ["pass"]);
  assert.equal(job["attempt"], 1);
  await assertOneFinal(s, "PHID-HMBT-killagent", "pass");
  assert.deepEqual(
    s.conduit.messages("PHID-HMBT-killagent").map((m) => m.type),
    ["work", "pass"],
    "Harbormaster was told the job was lost before it passed",
  );
  assert.equal(sha(containerOutput(await log(s, id))), sha(spewOutput(10, 100)));

  // The dead agent comes back: it clears what its earlier life left behind.
  await agent(t, s, "agent-a", workA);
  assert.equal(await leftovers(s, id), 0);
  const images = await s.docker.listImages({
    filters: { reference: [imageRepository(`agent-a-${s.suffix}`)] },
  });
  assert.equal(images.length, 0, "the restarted agent removed the image of its killed job");
});

test("agent killed -9 mid-job, no retries left: the job fails with the reason, once", async (t) => {
  const s = await stack(t, { 1: spewScript(40, 10, 0.2) }, { retries: 0 });
  const workA = tempDir(t, "pdci-agent-a-");
  const a = await agent(t, s, "agent-a", workA);
  const id = await submit(s, "PHID-HMBT-killnoretry", 1);
  await jobWhere(s, id, "running", (j) => j["phase"] === "running" && Number(j["logBytes"]) > 0);
  await a.kill9();
  const job = await waitForJob(s.url, id, 30_000);
  await assertResults(s.url, [job], ["fail"]);
  assert.match(String(job["reason"]), /lost/);
  await assertOneFinal(s, "PHID-HMBT-killnoretry", "fail");
  await agent(t, s, "agent-a", workA);
  assert.equal(await leftovers(s, id), 0, "the restarted agent removed its old container");
});

test("coordinator killed -9 mid-log and restarted: the job resumes, the log is complete", async (t) => {
  const s = await stack(t, { 1: spewScript(30, 5000, 0.1), 2: "echo queued-job-ran\n" });
  await agent(t, s, "agent-a");
  const id = await submit(s, "PHID-HMBT-killcoord", 1);
  await jobWhere(s, id, "streaming", (j) => Number(j["logBytes"]) > 100_000);
  // A second job waits in the queue behind the first (one slot) when the coordinator dies.
  const queued = await submit(s, "PHID-HMBT-killcoordq", 2);
  await s.coordinator.kill9();
  await new Promise((r) => setTimeout(r, 700));
  s.coordinator = await restartCoordinator(t, s);

  const job = await waitForJob(s.url, id, 60_000);
  await assertResults(s.url, [job], ["pass"]);
  assert.equal(job["attempt"], 0, "resumed, not run again");
  await assertOneFinal(s, "PHID-HMBT-killcoord", "pass");
  const full = await log(s, id);
  assert.equal(sha(full), job["logSha256"]);
  const out = containerOutput(full);
  const expected = spewOutput(30, 5000);
  assert.equal(out.length, Buffer.byteLength(expected));
  assert.equal(sha(out), sha(expected));
  assert.equal(
    (await waitForJob(s.url, queued, 60_000))["result"],
    "pass",
    "the queued job ran after the restart",
  );
  await assertOneFinal(s, "PHID-HMBT-killcoordq", "pass");
});

test("a job that spews output as fast as it can: every byte arrives, in order", async (t) => {
  const size = 50_000_000;
  const s = await stack(t, { 1: `yes abcdefghij | head -c ${size}\n` });
  await agent(t, s, "agent-a");
  const id = await submit(s, "PHID-HMBT-spew", 1);
  const job = await waitForJob(s.url, id, 120_000);
  await assertResults(s.url, [job], ["pass"]);
  await assertOneFinal(s, "PHID-HMBT-spew", "pass");
  const out = containerOutput(await log(s, id));
  assert.equal(out.length, size);
  assert.equal(sha(out), sha("abcdefghij\n".repeat(Math.ceil(size / 11)).slice(0, size)));
});

test("job ends while the coordinator is down: result and log arrive after its restart", async (t) => {
  const s = await stack(t, { 1: spewScript(4, 1000, 0.3) });
  await agent(t, s, "agent-a");
  const id = await submit(s, "PHID-HMBT-endwhiledown", 1);
  await jobWhere(s, id, "running", (j) => j["phase"] === "running");
  await s.coordinator.kill9();
  await new Promise((r) => setTimeout(r, 2_500));
  s.coordinator = await restartCoordinator(t, s);
  const job = await waitForJob(s.url, id, 60_000);
  await assertResults(s.url, [job], ["pass"]);
  await assertOneFinal(s, "PHID-HMBT-endwhiledown", "pass");
  assert.equal(sha(containerOutput(await log(s, id))), sha(spewOutput(4, 1000)));
});

test("coordinator killed -9 mid-report: the result is delivered once after restart", async (t) => {
  const s = await stack(t, { 1: "echo quick\n", 2: "echo also quick\n" });
  await agent(t, s, "agent-a");
  // Target 1: Conduit applies the pass but the answer never comes. Target 2: Conduit hangs.
  s.conduit.failNext("applied-hang", 1, "harbormaster.sendmessage");
  s.conduit.failNext("hang", 1, "harbormaster.sendmessage");
  const one = await submit(s, "PHID-HMBT-midreporta", 1);
  await waitForJob(s.url, one);
  const two = await submit(s, "PHID-HMBT-midreportb", 2);
  await waitForJob(s.url, two);
  await new Promise((r) => setTimeout(r, 300));
  await s.coordinator.kill9();
  s.coordinator = await restartCoordinator(t, s);
  await assertOneFinal(s, "PHID-HMBT-midreporta", "pass");
  await assertOneFinal(s, "PHID-HMBT-midreportb", "pass");
});

test("a connection cut from either side within the lease: resumed, not restarted", async (t) => {
  // Covered with the agent's socket in test/resume.test.ts; here the coordinator side goes away
  // abruptly (process killed) while the agent keeps running, and comes back within the lease.
  const s = await stack(t, { 1: spewScript(20, 2000, 0.1) });
  await agent(t, s, "agent-a");
  const id = await submit(s, "PHID-HMBT-cutserver", 1);
  await jobWhere(s, id, "streaming", (j) => Number(j["logBytes"]) > 10_000);
  await s.coordinator.kill9();
  s.coordinator = await restartCoordinator(t, s);
  const job = await waitForJob(s.url, id, 60_000);
  await assertResults(s.url, [job], ["pass"]);
  assert.equal(job["attempt"], 0);
  await assertOneFinal(s, "PHID-HMBT-cutserver", "pass");
  assert.equal(sha(containerOutput(await log(s, id))), sha(spewOutput(20, 2000)));
});
