import { resolve } from "node:path";
import {
  DEFAULT_CONDUIT_TIMEOUT_MS,
  DEFAULT_LIMITS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_RETRY_BASE_MS,
  DEFAULT_RETRY_CAP_MS,
  DEFAULT_TIMING,
  type CoordinatorConfig,
} from "../coordinator/config.js";
import type { CommandSpec, OptionSpec } from "./cli.js";
import { ConfigError, OptionReader } from "./options.js";

const MIB = 1024 * 1024;

export const COORDINATOR_OPTIONS: readonly OptionSpec[] = [
  { name: "listen", value: "host:port", help: "address to listen on (PDCI_LISTEN, default 127.0.0.1:8080)" },
  { name: "data", value: "dir", help: "SQLite database and logs (PDCI_DATA, default ./data)" },
  { name: "public-url", value: "url", help: "base of links given to Harbormaster (PDCI_PUBLIC_URL)" },
  { name: "conduit-url", value: "url", help: "Phabricator/Phorge base URL (PDCI_CONDUIT_URL)" },
  {
    name: "conduit-token-file",
    value: "file",
    help: "file holding the Conduit API token (PDCI_CONDUIT_TOKEN)",
  },
  { name: "webhook-user", value: "user", help: "HTTP Basic user Harbormaster sends (PDCI_WEBHOOK_USER)" },
  {
    name: "webhook-password-file",
    value: "file",
    help: "file holding the HTTP Basic password (PDCI_WEBHOOK_PASSWORD)",
  },
  {
    name: "agent-token-file",
    value: "file",
    help: "file holding the token agents present (PDCI_AGENT_TOKEN)",
  },
  {
    name: "api-token-file",
    value: "file",
    help: "file holding the bearer token of the write API, e.g. cancel (PDCI_API_TOKEN)",
  },
  {
    name: "poll-interval",
    value: "seconds",
    help: "how often active jobs' builds are checked for abort/restart (PDCI_POLL_INTERVAL, default 10)",
  },
  {
    name: "conduit-timeout",
    value: "seconds",
    help: "timeout of one Conduit call (PDCI_CONDUIT_TIMEOUT, default 15)",
  },
  {
    name: "conduit-retry-max",
    value: "seconds",
    help: "longest wait between retries of a Conduit message (PDCI_CONDUIT_RETRY_MAX, default 60)",
  },
  {
    name: "allow-repository",
    value: "prefix",
    help: "only build repositories whose URI starts with a prefix (PDCI_ALLOW_REPOSITORIES, comma list)",
    variadic: true,
  },
  {
    name: "retries",
    value: "n",
    help: "runs of a lost job on another agent before it fails (PDCI_RETRIES, default 1)",
  },
  {
    name: "job-timeout",
    value: "seconds",
    help: "wall-clock limit of a job's container (PDCI_JOB_TIMEOUT, default 3600)",
  },
  {
    name: "job-memory",
    value: "MiB",
    help: "memory limit of a job's container (PDCI_JOB_MEMORY, default 2048)",
  },
  { name: "job-cpus", value: "n", help: "CPU limit of a job's container (PDCI_JOB_CPUS, default 2)" },
  { name: "job-pids", value: "n", help: "process limit of a job's container (PDCI_JOB_PIDS, default 1024)" },
  {
    name: "heartbeat-interval",
    value: "seconds",
    help: "agent heartbeat interval (PDCI_HEARTBEAT_INTERVAL, default 10)",
  },
  {
    name: "lease",
    value: "seconds",
    help: "a job whose agent is silent this long is lost (PDCI_LEASE, default 30)",
  },
];

/** Builds the one validated, frozen coordinator configuration from flags and environment. */
export function coordinatorConfig(opts: Record<string, unknown>, env: NodeJS.ProcessEnv): CoordinatorConfig {
  const r = new OptionReader(opts, env);
  const { host, port } = r.hostPort("listen", "PDCI_LISTEN", "127.0.0.1:8080");
  const publicUrl = r.string("publicUrl", "PDCI_PUBLIC_URL", "").replace(/\/+$/, "");
  if (publicUrl && !/^https?:\/\/[^/]+/.test(publicUrl))
    r.problems.push("--public-url: must be an absolute http(s) URL (Harbormaster links need one)");
  const conduitUrl = r.string("conduitUrl", "PDCI_CONDUIT_URL", "").replace(/\/+$/, "");
  const conduitToken = r.secret("conduitTokenFile", "PDCI_CONDUIT_TOKEN");
  if (conduitUrl && !/^https?:\/\/[^/]+/.test(conduitUrl))
    r.problems.push("--conduit-url: must be an http(s) URL");
  if (conduitUrl && !conduitToken)
    r.problems.push("--conduit-url is set but no Conduit token (--conduit-token-file or PDCI_CONDUIT_TOKEN)");
  const webhookUser = r.string("webhookUser", "PDCI_WEBHOOK_USER", "");
  const webhookPassword = r.secret("webhookPasswordFile", "PDCI_WEBHOOK_PASSWORD");
  if (Boolean(webhookUser) !== Boolean(webhookPassword))
    r.problems.push("webhook user and password must be set together");
  const agentToken = r.secret("agentTokenFile", "PDCI_AGENT_TOKEN");
  if (!agentToken) r.problems.push("an agent token is required (--agent-token-file or PDCI_AGENT_TOKEN)");
  else if (agentToken.length < 16) r.problems.push("the agent token must be at least 16 characters");
  const leaseMs = r.seconds("lease", "PDCI_LEASE", DEFAULT_TIMING.leaseMs);
  const config: CoordinatorConfig = {
    host,
    port,
    dataDir: resolve(r.string("data", "PDCI_DATA", "./data")),
    publicUrl,
    conduit: conduitUrl
      ? {
          url: conduitUrl,
          token: conduitToken,
          timeoutMs: DEFAULT_CONDUIT_TIMEOUT_MS,
          retryBaseMs: DEFAULT_RETRY_BASE_MS,
          retryCapMs: DEFAULT_RETRY_CAP_MS,
        }
      : null,
    webhookUser,
    webhookPassword,
    agentToken,
    apiToken: r.secret("apiTokenFile", "PDCI_API_TOKEN"),
    pollIntervalMs: r.seconds("pollInterval", "PDCI_POLL_INTERVAL", DEFAULT_POLL_INTERVAL_MS),
    allowedRepositories: r.list("allowRepository", "PDCI_ALLOW_REPOSITORIES"),
    retries: r.int("retries", "PDCI_RETRIES", 1, 0, 100),
    limits: {
      memoryBytes: r.int("jobMemory", "PDCI_JOB_MEMORY", DEFAULT_LIMITS.memoryBytes / MIB, 6, 1 << 24) * MIB,
      nanoCpus:
        Math.round(Number(r.string("jobCpus", "PDCI_JOB_CPUS", "2")) * 1e9) || DEFAULT_LIMITS.nanoCpus,
      pidsLimit: r.int("jobPids", "PDCI_JOB_PIDS", DEFAULT_LIMITS.pidsLimit, 16, 1 << 22),
    },
    timing: {
      ...DEFAULT_TIMING,
      heartbeatIntervalMs: r.seconds(
        "heartbeatInterval",
        "PDCI_HEARTBEAT_INTERVAL",
        Math.min(DEFAULT_TIMING.heartbeatIntervalMs, leaseMs / 3),
      ),
      leaseMs,
      jobTimeoutMs: r.seconds("jobTimeout", "PDCI_JOB_TIMEOUT", DEFAULT_TIMING.jobTimeoutMs),
    },
  };
  if (config.timing.heartbeatIntervalMs * 2 > leaseMs)
    r.problems.push("the heartbeat interval must be at most half the lease");
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return Object.freeze(config);
}

export function coordinatorCommand(run: (config: CoordinatorConfig) => Promise<void>): CommandSpec {
  return {
    name: "coordinator",
    description: "run the coordinator: webhook intake, queue, agent hub, Conduit reporter, web UI",
    options: [...COORDINATOR_OPTIONS],
    run: async (opts) => run(coordinatorConfig(opts, process.env)),
  };
}
