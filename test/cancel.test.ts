import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import Dockerode from "dockerode";
import { LABEL_AGENT, LABEL_JOB } from "../agent/job-runner.js";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import type { FakeConduit } from "./helpers/fake-conduit.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  API_TOKEN,
  conduitConfig,
  coordinatorTestConfig,
  startFakeConduit,
  startTestAgent,
  startTestCoordinator,
  tempDir,
  TEST_TIMING,
  uniqueName,
  waitFor,
  waitForJob,
  waitForJobWhere,
  webhook,
  wsUrl,
} from "./helpers/stack.js";

/** A container that would run forever; it traps TERM so the grace period is what stops it. */
const FOREVER = 'trap "echo got TERM; exit 143" TERM\necho started\nwhile true; do sleep 0.1; done\n';

interface Scenario {
  agentName: string;
  conduit: FakeConduit;
  url: string;
  staging: string;
  docker: Dockerode;
}

async function setup(t: TestContext, jobTimeoutMs: number = TEST_TIMING.jobTimeoutMs): Promise<Scenario> {
  const docker = await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, { 1: shellDiff(base, FOREVER), 2: shellDiff(base, "sleep 1000\n") });
  const conduit = await startFakeConduit(t);
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), {
      conduit: conduitConfig(conduit),
      timing: { ...TEST_TIMING, jobTimeoutMs },
    }),
  );
  const agentName = uniqueName("cancel");
  const agent = await startTestAgent(t, wsUrl(c.url), { name: agentName });
  await waitFor("agent connected", () => agent.connected);
  return { agentName, conduit, url: c.url, staging, docker };
}

async function startJob(s: Scenario, target: string, diff = 1): Promise<number> {
  s.conduit.addTarget({ phid: target });
  const res = await webhook(
    s.url,
    `/harbormaster?target=${target}&staging=${s.staging}&ref=refs/tags/phabricator/diff/${diff}`,
  );
  const id = Number(res.body["jobId"]);
  await waitForJobWhere(
    s.url,
    id,
    "container output",
    (j) => j["phase"] === "running" && Number(j["logBytes"]) > 0,
  );
  return id;
}

async function jobContainers(s: Scenario, id: number): Promise<number> {
  const label = [`${LABEL_JOB}=${id}`, `${LABEL_AGENT}=${s.agentName}`];
  return (await s.docker.listContainers({ all: true, filters: { label } })).length;
}

test("cancel through the API stops the container within the grace period and reports fail", async (t) => {
  const s = await setup(t);
  const id = await startJob(s, "PHID-HMBT-cancelapi");
  const denied = await fetch(`${s.url}/api/jobs/${id}/cancel`, { method: "POST" });
  assert.equal(denied.status, 401);

  const began = Date.now();
  const res = await fetch(`${s.url}/api/jobs/${id}/cancel?reason=stop%20it`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_TOKEN}` },
  });
  assert.equal(res.status, 200);
  const job = await waitForJob(s.url, id);
  const took = Date.now() - began;
  assert.equal(job["result"], "cancelled");
  assert.match(String(job["reason"]), /stop it/);
  assert.ok(took < TEST_TIMING.cancelGraceMs + 5_000, `stopped in ${took} ms`);

  await waitFor("fail at Conduit", () => s.conduit.messages("PHID-HMBT-cancelapi").length === 1);
  const [msg] = s.conduit.messages("PHID-HMBT-cancelapi");
  assert.equal(msg?.type, "fail");
  assert.match(JSON.stringify(msg?.unit), /stop it/);
  const log = await (await fetch(`${s.url}/api/jobs/${id}/log`)).text();
  assert.match(log, /got TERM/, "the container got SIGTERM first");
  assert.equal(await jobContainers(s, id), 0, "container removed");
});

test("a job that runs past its timeout is stopped and fails", async (t) => {
  const s = await setup(t, 1_500);
  s.conduit.addTarget({ phid: "PHID-HMBT-timeout" });
  const res = await webhook(
    s.url,
    `/harbormaster?target=PHID-HMBT-timeout&staging=${s.staging}&ref=refs/tags/phabricator/diff/2`,
  );
  const job = await waitForJob(s.url, Number(res.body["jobId"]));
  assert.equal(job["result"], "fail");
  assert.match(String(job["reason"]), /timed out/);
  await waitFor("fail at Conduit", () => s.conduit.messages("PHID-HMBT-timeout").length === 1);
  assert.equal(await jobContainers(s, Number(res.body["jobId"])), 0);
});

test("an aborted build cancels its job and nothing is sent to the target", async (t) => {
  const s = await setup(t);
  const id = await startJob(s, "PHID-HMBT-aborted");
  const build = s.conduit.target("PHID-HMBT-aborted")?.buildPHID ?? "";
  s.conduit.setBuildStatus(build, "aborted");
  const job = await waitForJob(s.url, id);
  assert.equal(job["result"], "cancelled");
  assert.match(String(job["reason"]), /aborted/);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(s.conduit.messages("PHID-HMBT-aborted"), [], "no message to an aborted target");
  assert.equal(await jobContainers(s, id), 0);
});

test("a restarted build cancels the old job; the new target's webhook is a new job", async (t) => {
  const s = await setup(t);
  const id = await startJob(s, "PHID-HMBT-oldgen");
  const build = s.conduit.target("PHID-HMBT-oldgen")?.buildPHID ?? "";
  const newTarget = s.conduit.restartBuild(build);
  const old = await waitForJob(s.url, id);
  assert.equal(old["result"], "cancelled");
  assert.match(String(old["reason"]), /restarted/);
  const res = await webhook(
    s.url,
    `/harbormaster?target=${newTarget}&staging=${s.staging}&ref=refs/tags/phabricator/diff/1`,
  );
  assert.equal(res.status, 202);
  assert.notEqual(res.body["jobId"], id);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(s.conduit.messages("PHID-HMBT-oldgen"), []);
});
