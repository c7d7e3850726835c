import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AgentConfig } from "../agent/config.js";
import type { CoordinatorConfig } from "../coordinator/config.js";
import { agentConfig } from "./agent-command.js";
import type { CommandSpec } from "./cli.js";
import { COORDINATOR_OPTIONS, coordinatorConfig } from "./coordinator-command.js";

/** The agent token of a local `up`, kept in the data directory so restarts reuse it. */
function localAgentToken(dataDir: string): string {
  const file = join(dataDir, "agent-token");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(24).toString("base64url");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}

export interface UpConfig {
  coordinator: CoordinatorConfig;
  agent: AgentConfig;
  sampleBase: string;
}

export async function upConfig(opts: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<UpConfig> {
  const dataDir = String(opts["data"] ?? env["PDCI_DATA"] ?? "./data");
  const token = env["PDCI_AGENT_TOKEN"] || opts["agentTokenFile"] ? undefined : localAgentToken(dataDir);
  const withToken = token ? { ...env, PDCI_AGENT_TOKEN: token } : env;
  const coordinator = coordinatorConfig(opts, withToken);
  const host = coordinator.host === "0.0.0.0" ? "127.0.0.1" : coordinator.host;
  const agent = await agentConfig(
    {
      url: `ws://${host}:${coordinator.port}/agent`,
      tokenFile: opts["agentTokenFile"],
      name: opts["name"],
      labels: opts["labels"],
      capacity: opts["capacity"],
      workDir: opts["workDir"] ?? join(coordinator.dataDir, "agent"),
      dockerSocket: opts["dockerSocket"],
    },
    withToken,
  );
  return {
    coordinator,
    agent,
    sampleBase: String(opts["sampleBase"] ?? env["PDCI_SAMPLE_BASE"] ?? "busybox:latest"),
  };
}

export function upCommand(run: (config: UpConfig) => Promise<void>): CommandSpec {
  return {
    name: "up",
    description: "a coordinator and one local agent in one process, plus a sample repository to build",
    options: [
      ...COORDINATOR_OPTIONS,
      { name: "name", value: "name", help: "local agent name (PDCI_AGENT_NAME)" },
      { name: "labels", value: "list", help: "local agent labels (PDCI_LABELS)" },
      { name: "capacity", value: "n", help: "local agent capacity (PDCI_CAPACITY)" },
      { name: "work-dir", value: "dir", help: "local agent work directory (default <data>/agent)" },
      { name: "docker-socket", value: "path", help: "Docker engine socket (PDCI_DOCKER_SOCKET)" },
      {
        name: "sample-base",
        value: "image",
        help: "base image of the sample repository (PDCI_SAMPLE_BASE, default busybox:latest)",
      },
    ],
    run: async (opts) => run(await upConfig(opts, process.env)),
  };
}
