import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { AGENT_TOKEN, API_TOKEN } from "./stack.js";

const CLI = join(fileURLToPath(new URL("../../bin/phab-dock-ci.js", import.meta.url)));

/** A phab-dock-ci process started from the CLI, with everything it printed. */
export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** kill -9: no cleanup, no goodbye, as a crash or an OOM kill. */
  kill9(): Promise<void>;
}

function start(t: TestContext, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: process.env["HOME"] ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const proc: Proc = {
    child,
    output: () => text,
    exited,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  t.after(() => proc.kill9());
  return proc;
}

/** A port that was free a moment ago, so a restarted coordinator can come back on the same one. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForOutput(proc: Proc, pattern: RegExp, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(proc.output())) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited early:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface CoordinatorProcOptions {
  port: number;
  dataDir: string;
  conduitUrl?: string;
  conduitToken?: string;
  retries?: number;
  leaseSeconds?: number;
  jobTimeoutSeconds?: number;
}

export async function startCoordinatorProc(t: TestContext, o: CoordinatorProcOptions): Promise<Proc> {
  const args = [
    "coordinator",
    "--listen",
    `127.0.0.1:${o.port}`,
    "--data",
    o.dataDir,
    "--public-url",
    "http://ci.example.test",
  ];
  args.push("--lease", String(o.leaseSeconds ?? 5), "--heartbeat-interval", "0.2", "--poll-interval", "0.5");
  args.push("--retries", String(o.retries ?? 1), "--job-timeout", String(o.jobTimeoutSeconds ?? 120));
  args.push("--conduit-timeout", "1", "--conduit-retry-max", "0.5");
  const env: Record<string, string> = { PDCI_AGENT_TOKEN: AGENT_TOKEN, PDCI_API_TOKEN: API_TOKEN };
  if (o.conduitUrl) {
    args.push("--conduit-url", o.conduitUrl);
    env["PDCI_CONDUIT_TOKEN"] = o.conduitToken ?? "";
  }
  const proc = start(t, args, env);
  await waitForOutput(proc, /listening on/, "coordinator");
  return proc;
}

export async function startAgentProc(
  t: TestContext,
  o: { url: string; name: string; workDir: string; capacity?: number },
): Promise<Proc> {
  const args = ["agent", "--url", o.url, "--name", o.name, "--work-dir", o.workDir];
  args.push("--capacity", String(o.capacity ?? 1), "--reconnect-max", "0.3");
  const proc = start(t, args, { PDCI_AGENT_TOKEN: AGENT_TOKEN });
  await waitForOutput(proc, /connected to /, `agent ${o.name}`);
  return proc;
}
