/**
 * Many real agents (the Agent class, with the instant backend) in one process. Prints
 * `{"ev":"ready","connected":n}` once all are connected and, when asked, one line per started job
 * `{"ev":"assign","job":"<id>","t":"<monotonic ns>"}`, taken when the agent starts the job it was
 * offered (synchronously inside its job.assign handler). process.hrtime is CLOCK_MONOTONIC, one
 * clock for every process on the machine, so these times compare with the bench process's own.
 *
 * Environment: BENCH_FLEET = JSON {url, token, count, prefix, capacity, reportAssign, workDir}.
 */
import { createInterface } from "node:readline";
import { Agent } from "../../agent/agent.js";
import { consoleLogger } from "../../agent/logger.js";
import { agentConfig } from "../../bin/agent-command.js";
import { InstantBackend, InstantCheckout } from "./instant-backend.js";

interface Settings {
  url: string;
  token: string;
  count: number;
  prefix: string;
  capacity: number;
  reportAssign: boolean;
  workDir: string;
}

/** Agents dialled at once; the rest wait, so the listen backlog never overflows. */
const BATCH = 25;
const CONNECT_TIMEOUT_MS = 60_000;

const emit = (msg: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(msg)}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const s = JSON.parse(process.env["BENCH_FLEET"] ?? "{}") as Settings;
  const base = await agentConfig(
    { url: s.url, name: `${s.prefix}-0`, workDir: s.workDir, capacity: String(s.capacity) },
    { PDCI_AGENT_TOKEN: s.token },
  );
  const log = consoleLogger(`fleet ${s.prefix}`, true);
  const backend = new InstantBackend();
  const checkout = new InstantCheckout(
    s.reportAssign
      ? (jobId) => emit({ ev: "assign", job: jobId, t: process.hrtime.bigint().toString() })
      : undefined,
  );
  const agents: Agent[] = [];
  for (let i = 0; i < s.count; i += BATCH) {
    const batch: Agent[] = [];
    for (let j = i; j < Math.min(s.count, i + BATCH); j++) {
      const agent = new Agent({ ...base, name: `${s.prefix}-${j}` }, checkout, backend, log);
      batch.push(agent);
      agents.push(agent);
      await agent.start();
    }
    const deadline = Date.now() + CONNECT_TIMEOUT_MS;
    while (!batch.every((a) => a.connected)) {
      if (Date.now() > deadline) throw new Error(`agents of ${s.prefix} did not connect`);
      await sleep(5);
    }
  }
  emit({ ev: "ready", connected: agents.filter((a) => a.connected).length });

  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "status") {
      emit({ ev: "status", connected: agents.filter((a) => a.connected).length, runs: backend.runs });
    }
  });
  process.on("SIGTERM", () => {
    // Instant jobs leave nothing to clean up; the timer bounds the wait anyway.
    setTimeout(() => process.exit(0), 2_000).unref();
    void Promise.allSettled(agents.map((a) => Promise.resolve(a.stop()))).then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  console.error(`agent-fleet: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
