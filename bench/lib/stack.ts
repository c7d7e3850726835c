/** Starting the pieces the benchmarks combine: coordinator, agent fleets, light agents, real agents. */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Timing } from "../../coordinator/config.js";
import { FakeConduit } from "../../test/helpers/fake-conduit.js";
import { benchScript, CLI, spawnNode, type Child } from "./child.js";
import { getJson, WebhookClient } from "./webhook-client.js";

export const AGENT_TOKEN = "bench-agent-token-0123456789abcdef";

/**
 * The docker CLI to use: BENCH_DOCKER, else the engine package's own client (as .ci/run does; a
 * newer client elsewhere on the PATH may not speak this engine's API version), else `docker`.
 */
export const DOCKER_CLI =
  process.env["BENCH_DOCKER"] ?? (existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker");

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A temporary directory removed by `cleanup()`. */
export class Scratch {
  readonly dir: string;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), `pdci-bench-${prefix}-`));
  }

  sub(name: string): string {
    const d = join(this.dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  cleanupSub(name: string): void {
    rmSync(join(this.dir, name), { recursive: true, force: true });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface CoordinatorProcess {
  child: Child;
  url: string;
  wsUrl: string;
  pid: number;
  dataDir: string;
}

export async function startCoordinatorProcess(opts: {
  dataDir: string;
  conduit?: { url: string; token: string };
  timing?: Partial<Timing>;
  fdLimit?: number;
  nodeArgs?: string[];
}): Promise<CoordinatorProcess> {
  const settings = {
    dataDir: opts.dataDir,
    agentToken: AGENT_TOKEN,
    conduitUrl: opts.conduit?.url,
    conduitToken: opts.conduit?.token,
    timing: opts.timing,
  };
  const child = spawnNode(benchScript("coordinator-process"), {
    name: "coordinator",
    env: { BENCH_COORDINATOR: JSON.stringify(settings) },
    fdLimit: opts.fdLimit,
    nodeArgs: opts.nodeArgs,
  });
  const ready = await child.waitForEvent("ready", 30_000);
  const url = String(ready["url"]);
  return { child, url, wsUrl: `${url.replace(/^http/, "ws")}/agent`, pid: child.pid, dataDir: opts.dataDir };
}

/** Starts `count` real agents (instant backend) spread over `processes` processes. */
export async function startFleet(opts: {
  wsUrl: string;
  count: number;
  processes: number;
  prefix: string;
  workDir: string;
  capacity?: number;
  reportAssign?: boolean;
}): Promise<Child[]> {
  const per = Math.ceil(opts.count / opts.processes);
  const children: Child[] = [];
  for (let p = 0; p < opts.processes && p * per < opts.count; p++) {
    const settings = {
      url: opts.wsUrl,
      token: AGENT_TOKEN,
      count: Math.min(per, opts.count - p * per),
      prefix: `${opts.prefix}${p}`,
      capacity: opts.capacity ?? 1,
      reportAssign: opts.reportAssign ?? false,
      workDir: join(opts.workDir, `fleet-${p}`),
    };
    children.push(
      spawnNode(benchScript("agent-fleet"), {
        name: `fleet ${p}`,
        env: { BENCH_FLEET: JSON.stringify(settings) },
        fdLimit: 65_536,
      }),
    );
  }
  // Started together, waited for together; each process dials in small batches.
  await Promise.all(children.map((c) => c.waitForEvent("ready", 180_000)));
  return children;
}

/** Starts `count` light WebSocket agents spread over `processes` processes. */
export async function startLightAgents(opts: {
  wsUrl: string;
  count: number;
  processes: number;
  prefix: string;
  concurrency?: number;
}): Promise<Child[]> {
  const per = Math.ceil(opts.count / opts.processes);
  const children: Child[] = [];
  for (let p = 0; p < opts.processes && p * per < opts.count; p++) {
    const settings = {
      url: opts.wsUrl,
      token: AGENT_TOKEN,
      count: Math.min(per, opts.count - p * per),
      prefix: `${opts.prefix}${p}`,
      concurrency: opts.concurrency ?? 50,
    };
    children.push(
      spawnNode(benchScript("light-agents"), {
        name: `light agents ${p}`,
        env: { BENCH_LIGHT: JSON.stringify(settings) },
        fdLimit: 65_536,
      }),
    );
  }
  await Promise.all(children.map((c) => c.waitForEvent("ready", 240_000)));
  return children;
}

/** Starts `phab-dock-ci agent` (the real command: git, Docker) and waits until it is connected. */
export async function startCliAgent(opts: {
  wsUrl: string;
  name: string;
  workDir: string;
  capacity: number;
  nodeArgs?: string[];
  cwd?: string;
}): Promise<{ child: Child; readyMs: number }> {
  const child = spawnNode(CLI, {
    name: `agent ${opts.name}`,
    args: [
      "agent",
      "--url",
      opts.wsUrl,
      "--name",
      opts.name,
      "--capacity",
      String(opts.capacity),
      "--work-dir",
      opts.workDir,
    ],
    env: { PDCI_AGENT_TOKEN: AGENT_TOKEN },
    nodeArgs: opts.nodeArgs,
    cwd: opts.cwd,
  });
  // The agent logs this line when the coordinator's welcome arrives: it is then ready for jobs.
  await child.waitForLine((l) => l.includes(`connected to ${opts.wsUrl} as ${opts.name}`), 60_000);
  return { child, readyMs: performance.now() - child.startedAt };
}

/**
 * A coordinator process reporting to a fake Conduit, one `phab-dock-ci agent` with real git and
 * Docker, and a webhook client, all in a new scratch directory.
 */
export interface RealStack {
  scratch: Scratch;
  conduit: FakeConduit;
  coordinator: CoordinatorProcess;
  agent: Child;
  client: WebhookClient;
  /** Stops all of it and removes the scratch directory. */
  close(): Promise<void>;
}

export async function startRealStack(opts: { name: string; capacity: number }): Promise<RealStack> {
  const scratch = new Scratch(opts.name);
  const conduit = await FakeConduit.start();
  let coordinator: CoordinatorProcess | null = null;
  let agent: Child | null = null;
  let client: WebhookClient | null = null;
  const close = async (): Promise<void> => {
    client?.close();
    await agent?.stop();
    await coordinator?.child.stop();
    await conduit.close();
    scratch.cleanup();
  };
  try {
    coordinator = await startCoordinatorProcess({
      dataDir: scratch.sub("coordinator"),
      conduit: { url: conduit.url, token: conduit.token },
    });
    const started = await startCliAgent({
      wsUrl: coordinator.wsUrl,
      name: opts.name,
      workDir: scratch.sub("agent"),
      capacity: opts.capacity,
    });
    agent = started.child;
    client = new WebhookClient(coordinator.url, 4);
    return { scratch, conduit, coordinator, agent, client, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Polls /healthz until `count` agents are connected. */
export async function waitForAgents(baseUrl: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = await getJson(`${baseUrl}/healthz`);
    if (Number(health["agents"]) >= count) return;
    if (Date.now() > deadline)
      throw new Error(`only ${String(health["agents"])} of ${count} agents connected`);
    await sleep(100);
  }
}

/** Polls a job until it is finished; returns it. */
export async function waitForJob(
  baseUrl: string,
  id: number,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJson(`${baseUrl}/api/jobs/${id}`);
    if (job["state"] === "finished") return job;
    if (Date.now() > deadline) throw new Error(`job ${id} not finished after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export { sleep };
