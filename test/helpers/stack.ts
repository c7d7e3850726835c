import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { Agent } from "../../agent/agent.js";
import type { AgentConfig } from "../../agent/config.js";
import { DockerBackend } from "../../agent/docker-backend.js";
import { GitCheckout } from "../../agent/git-checkout.js";
import { silentLogger as agentSilent } from "../../agent/logger.js";
import { DEFAULT_LIMITS, DEFAULT_TIMING, type CoordinatorConfig } from "../../coordinator/config.js";
import { startCoordinator, type RunningCoordinator } from "../../coordinator/coordinator.js";
import { silentLogger } from "../../coordinator/logger.js";
import { FakeConduit } from "./fake-conduit.js";

export const AGENT_TOKEN = "test-agent-token-0123456789";
export const API_TOKEN = "test-api-token-0123456789";

/** Timing shrunk so scenarios take seconds, with the same ratios as the defaults. */
export const TEST_TIMING = Object.freeze({
  ...DEFAULT_TIMING,
  heartbeatIntervalMs: 200,
  leaseMs: 3_000,
  offerTimeoutMs: 2_000,
  logFlushIntervalMs: 20,
  cancelGraceMs: 1_000,
  jobTimeoutMs: 60_000,
});

/**
 * Agent names unique to one test: containers are labelled with the agent's name and the job id,
 * and job ids repeat across the coordinators of different tests running on one engine.
 */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

export function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function coordinatorTestConfig(
  dataDir: string,
  over: Partial<CoordinatorConfig> = {},
): CoordinatorConfig {
  return {
    host: "127.0.0.1",
    port: 0,
    dataDir,
    publicUrl: "http://ci.example.test",
    conduit: null,
    webhookUser: "",
    webhookPassword: "",
    agentToken: AGENT_TOKEN,
    apiToken: API_TOKEN,
    pollIntervalMs: 200,
    allowedRepositories: [],
    retries: 1,
    limits: { ...DEFAULT_LIMITS, memoryBytes: 256 * 1024 * 1024 },
    timing: TEST_TIMING,
    ...over,
  };
}

export async function startTestCoordinator(
  t: TestContext,
  config: CoordinatorConfig,
): Promise<RunningCoordinator> {
  const c = await startCoordinator(config, silentLogger);
  t.after(() => c.close());
  return c;
}

export async function startFakeConduit(t: TestContext): Promise<FakeConduit> {
  const conduit = await FakeConduit.start();
  t.after(() => conduit.close());
  return conduit;
}

export function conduitConfig(conduit: FakeConduit) {
  return { url: conduit.url, token: conduit.token, timeoutMs: 2_000, retryBaseMs: 50, retryCapMs: 500 };
}

export async function startTestAgent(
  t: TestContext,
  wsUrl: string,
  over: Partial<AgentConfig> = {},
): Promise<Agent> {
  const workDir = tempDir(t, "pdci-agent-");
  const config: AgentConfig = {
    url: wsUrl,
    token: AGENT_TOKEN,
    name: uniqueName("agent"),
    labels: [],
    capacity: 1,
    workDir,
    dockerSocket: "/var/run/docker.sock",
    reconnect: { baseMs: 50, capMs: 300 },
    logMemoryBytes: 8 * 1024 * 1024,
    logSpillBytes: 256 * 1024 * 1024,
    ...over,
  };
  const agent = new Agent(
    config,
    new GitCheckout({ cacheDir: join(workDir, "mirrors") }),
    new DockerBackend({ socketPath: config.dockerSocket }),
    agentSilent,
  );
  await agent.start();
  t.after(() => agent.stop());
  return agent;
}

export function wsUrl(httpUrl: string): string {
  return `${httpUrl.replace(/^http/, "ws")}/agent`;
}

/** Polls `pred` every 20 ms for at most `timeoutMs`; rejects with `what` on timeout. */
export async function waitFor(what: string, pred: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function webhook(
  base: string,
  pathAndQuery: string,
  init: { method?: string; auth?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { "Content-Type": "application/x-www-form-urlencoded" };
  if (init.auth) headers["Authorization"] = `Basic ${Buffer.from(init.auth).toString("base64")}`;
  const res = await fetch(`${base}${pathAndQuery}`, { method: init.method ?? "POST", headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  return (await res.json()) as Record<string, unknown>;
}

export async function getText(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** Polls the job API every 25 ms until `pred` holds for the job (bounded); returns the job. */
export async function waitForJobWhere(
  base: string,
  id: number,
  what: string,
  pred: (job: Record<string, unknown>) => boolean,
  timeoutMs = 60_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJson(`${base}/api/jobs/${id}`).catch(() => ({}) as Record<string, unknown>);
    if (pred(job)) return job;
    if (Date.now() > deadline)
      throw new Error(`job ${id}: ${what} not reached after ${timeoutMs} ms: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Asserts the results of finished jobs; on a mismatch the message carries each job and its log. */
export async function assertResults(
  base: string,
  jobs: ReadonlyArray<Record<string, unknown>>,
  expected: ReadonlyArray<string>,
): Promise<void> {
  const actual = jobs.map((j) => j["result"]);
  if (actual.length === expected.length && actual.every((r, i) => r === expected[i])) return;
  const details = await Promise.all(
    jobs.map(async (j) => {
      const log = await getText(`${base}/api/jobs/${String(j["id"])}/log`).catch((e: unknown) => String(e));
      return `job ${JSON.stringify(j)}\n--- log ---\n${log.slice(-4000)}`;
    }),
  );
  assert.fail(
    `results ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}\n${details.join("\n")}`,
  );
}

/** Polls the job API until the job is finished (bounded); returns the job. */
export function waitForJob(base: string, id: number, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return waitForJobWhere(base, id, "finished", (j) => j["state"] === "finished", timeoutMs);
}
