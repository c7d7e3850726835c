/** Timing knobs the coordinator dictates to agents in `welcome`; tests shrink them. */
export interface Timing {
  /** How often agents send heartbeats. A third of the lease leaves room for two lost beats. */
  heartbeatIntervalMs: number;
  /**
   * An idle agent (no jobs, so no lease to renew) beats only every this many intervals: its beat
   * just says the connection lives, and at 10,000 idle agents every beat costs the coordinator CPU.
   */
  idleHeartbeatEvery: number;
  /** A running job whose lease is not renewed for this long is lost. */
  leaseMs: number;
  /** How long an agent may take to answer job.assign before the job goes back to the queue. */
  offerTimeoutMs: number;
  /** How often agents send buffered log bytes. */
  logFlushIntervalMs: number;
  /** Largest log chunk in one job.log frame. */
  maxChunkBytes: number;
  /** Log bytes kept per job; the agent truncates beyond it. */
  maxLogBytes: number;
  /** How long an agent waits between docker stop's SIGTERM and SIGKILL on cancel. */
  cancelGraceMs: number;
  /** Wall-clock limit of the container run. */
  jobTimeoutMs: number;
}

export const DEFAULT_TIMING: Timing = Object.freeze({
  heartbeatIntervalMs: 10_000,
  idleHeartbeatEvery: 3,
  leaseMs: 30_000,
  offerTimeoutMs: 10_000,
  logFlushIntervalMs: 250,
  maxChunkBytes: 512 * 1024,
  maxLogBytes: 4 * 1024 * 1024 * 1024,
  cancelGraceMs: 10_000,
  jobTimeoutMs: 60 * 60 * 1000,
});

export interface ConduitConfig {
  url: string;
  token: string;
  timeoutMs: number;
  /** Outbox retry delay bounds. */
  retryBaseMs: number;
  retryCapMs: number;
}

export interface CoordinatorConfig {
  host: string;
  port: number;
  dataDir: string;
  /** Base URL of links given to Harbormaster, without a trailing slash. */
  publicUrl: string;
  conduit: ConduitConfig | null;
  webhookUser: string;
  webhookPassword: string;
  agentToken: string;
  /** Bearer token for write calls of the API (cancel); empty disables them. */
  apiToken: string;
  /** How often the targets of active jobs are checked for aborted or restarted builds. */
  pollIntervalMs: number;
  /** When non-empty, repository URIs must start with one of these. */
  allowedRepositories: string[];
  /** Times a lost job is run again elsewhere before it fails. */
  retries: number;
  limits: { memoryBytes: number; nanoCpus: number; pidsLimit: number };
  timing: Timing;
}

export const DEFAULT_LIMITS = Object.freeze({
  memoryBytes: 2 * 1024 * 1024 * 1024,
  nanoCpus: 2_000_000_000,
  pidsLimit: 1024,
});

export const DEFAULT_CONDUIT_TIMEOUT_MS = 15_000;
/** Harbormaster never calls out on abort or restart, so we look; 10 s keeps it cheap and prompt. */
export const DEFAULT_POLL_INTERVAL_MS = 10_000;
export const DEFAULT_RETRY_BASE_MS = 1_000;
/** Results flow within a minute of Conduit recovering. */
export const DEFAULT_RETRY_CAP_MS = 60_000;
