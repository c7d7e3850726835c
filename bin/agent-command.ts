import { hostname } from "node:os";
import { resolve } from "node:path";
import {
  DEFAULT_DOCKER_SOCKET,
  DEFAULT_LOG_MEMORY_BYTES,
  DEFAULT_LOG_SPILL_BYTES,
  DEFAULT_RECONNECT,
  type AgentConfig,
} from "../agent/config.js";
import type { CommandSpec, OptionSpec } from "./cli.js";
import { ConfigError, OptionReader } from "./options.js";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$/;

export const AGENT_OPTIONS: readonly OptionSpec[] = [
  { name: "url", value: "url", help: "coordinator agent endpoint, ws(s)://host/agent (PDCI_URL)" },
  { name: "token-file", value: "file", help: "file holding the agent token (PDCI_AGENT_TOKEN)" },
  {
    name: "name",
    value: "name",
    help: "agent name, unique per host (PDCI_AGENT_NAME, default: remembered, else the host name)",
  },
  { name: "labels", value: "list", help: "comma list of labels jobs can ask for (PDCI_LABELS)" },
  { name: "capacity", value: "n", help: "jobs run at once (PDCI_CAPACITY, default 1)" },
  {
    name: "work-dir",
    value: "dir",
    help: "mirror cache, workspaces, identity (PDCI_WORK_DIR, default ./data/agent)",
  },
  {
    name: "docker-socket",
    value: "path",
    help: "Docker engine socket (PDCI_DOCKER_SOCKET, default /var/run/docker.sock)",
  },
  {
    name: "reconnect-max",
    value: "seconds",
    help: "longest wait between reconnect attempts (PDCI_RECONNECT_MAX, default 60)",
  },
];

/**
 * An agent started without a name remembers the one it chose in its work directory (with `conf`),
 * so a restarted agent comes back under the same name and the coordinator can match it to the
 * jobs it held.
 */
async function agentName(given: string, workDir: string): Promise<string> {
  if (given) return given;
  // Loaded only here: an agent given its name never pays for it.
  const { default: Conf } = await import("conf");
  const identity = new Conf<{ name?: string }>({
    projectName: "phab-dock-ci",
    cwd: workDir,
    configName: "agent",
  });
  const remembered = identity.get("name");
  if (remembered) return remembered;
  const name = hostname().replace(/[^A-Za-z0-9_.-]/g, "-");
  identity.set("name", name);
  return name;
}

function reconnectBackoff(capMs: number) {
  return { baseMs: Math.min(DEFAULT_RECONNECT.baseMs, capMs), capMs };
}

/** Builds the one validated, frozen agent configuration from flags and environment. */
export async function agentConfig(
  opts: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): Promise<AgentConfig> {
  const r = new OptionReader(opts, env);
  const url = r.string("url", "PDCI_URL", "");
  if (!/^wss?:\/\/[^/]+/.test(url))
    r.problems.push(
      "--url / PDCI_URL: a ws:// or wss:// URL of the coordinator's /agent endpoint is required",
    );
  const token = r.secret("tokenFile", "PDCI_AGENT_TOKEN");
  if (!token) r.problems.push("an agent token is required (--token-file or PDCI_AGENT_TOKEN)");
  const labels = r.list("labels", "PDCI_LABELS");
  for (const l of labels) if (!LABEL.test(l)) r.problems.push(`--labels: '${l}' is not a valid label`);
  const workDir = resolve(r.string("workDir", "PDCI_WORK_DIR", "./data/agent"));
  const given = r.string("name", "PDCI_AGENT_NAME", "");
  if (given && !NAME.test(given))
    r.problems.push(`--name: '${given}' may use letters, digits, '.', '_' and '-'`);
  const config: AgentConfig = {
    url,
    token,
    name: "",
    labels: [...new Set(labels)].sort(),
    capacity: r.int("capacity", "PDCI_CAPACITY", 1, 1, 1024),
    workDir,
    dockerSocket: r.string("dockerSocket", "PDCI_DOCKER_SOCKET", DEFAULT_DOCKER_SOCKET),
    reconnect: reconnectBackoff(r.seconds("reconnectMax", "PDCI_RECONNECT_MAX", DEFAULT_RECONNECT.capMs)),
    logMemoryBytes: DEFAULT_LOG_MEMORY_BYTES,
    logSpillBytes: DEFAULT_LOG_SPILL_BYTES,
  };
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  config.name = await agentName(given, workDir);
  return Object.freeze(config);
}

export function agentCommand(run: (config: AgentConfig) => Promise<void>): CommandSpec {
  return {
    name: "agent",
    description: "run a build agent on this Docker host; it dials the coordinator",
    options: [...AGENT_OPTIONS],
    run: async (opts) => run(await agentConfig(opts, process.env)),
  };
}
