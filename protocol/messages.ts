/**
 * The agent <-> coordinator protocol, version {@link PROTOCOL_VERSION}.
 *
 * Transport: one WebSocket per agent, dialled by the agent to `/agent` with
 * `Authorization: Bearer <token>`; authentication happens at the HTTP upgrade, before any frame.
 * Every frame is a JSON text frame holding one message, discriminated by `type`.
 *
 * Lifecycle contract:
 * 1. The agent sends `hello` first. The coordinator answers `welcome` (which dictates every timing
 *    knob) or an `error` with code `protocol_version` / `bad_hello` and closes the socket.
 * 2. `hello.running` lists jobs the agent still runs after a reconnect. The coordinator keeps their
 *    leases (`welcome.resumed`) or tells the agent to drop them (`welcome.cancel`).
 * 3. Offer, then claim: the coordinator sends `job.assign` only while the agent has a free slot;
 *    the agent answers `job.accept` or `job.reject` within `welcome.offerTimeoutMs`, otherwise the
 *    job goes back to the front of the queue.
 * 4. `heartbeat` every `welcome.heartbeatIntervalMs` renews the leases of the jobs it lists. A lease
 *    that expires marks the job lost; a late return of the agent gets `job.cancel` for it. An agent
 *    with no jobs holds no lease: it beats only every `welcome.idleHeartbeatEvery` intervals, and
 *    the coordinator drops its connection after that many leases of silence (a busy one's after
 *    one lease).
 * 5. Logs are byte ranges: `job.log {offset, data}`, the one binary frame (log-frame.ts), so bytes
 *    travel unchanged. The coordinator appends only at
 *    its current length, drops the overlap of a resend, answers a gap with `log.rewind`, and acks the
 *    durable length with `log.ack`. The agent keeps unacked bytes and resends them after a reconnect.
 * 6. `job.finished` (with the log's total length and SHA-256) follows the last log byte once that
 *    has been sent, and is repeated (also across reconnects) until `finished.ack`. The coordinator
 *    makes the log durable before the result it records (a log kept in its database: together
 *    with it), answers `log.rewind` when bytes are missing, and sends no `log.ack` for a job whose
 *    result it is recording: `finished.ack` covers the whole log. Duplicates are no-ops for the
 *    coordinator.
 * 7. `job.cancel` carries a grace period: the agent stops the container (stop with grace, then kill),
 *    and finishes the job with result `cancelled`.
 * 8. A peer answers a frame it cannot parse with `error` and otherwise ignores it; repeated bad
 *    frames close the socket with code 1008. Nothing a peer sends may crash the other side.
 */

/**
 * Bumped on any change to a message that an older peer would misread. A new optional field, which
 * older peers ignore and which has a default for when they leave it out, does not bump it.
 */
export const PROTOCOL_VERSION = 2;

/** WebSocket close code for policy violations (repeated bad frames, wrong version). */
export const CLOSE_POLICY_VIOLATION = 1008;

export type JobResult = "pass" | "fail" | "cancelled";

/** Resource limits for the job container; `undefined` means the agent's default. */
export interface JobLimits {
  memoryBytes?: number;
  nanoCpus?: number;
  pidsLimit?: number;
}

/** What an agent needs to run a job. Everything here was validated by the coordinator. */
export interface JobSpec {
  /** Repository to fetch from (the staging area for a diff, the repository for a commit). */
  repositoryUri: string;
  /** Ref to fetch, e.g. `refs/tags/phabricator/diff/12`; empty when `commit` is given. */
  ref: string;
  /** Commit hash to check out when no ref is given. */
  commit: string;
  timeoutMs: number;
  cancelGraceMs: number;
  limits: JobLimits;
  /** Tag to push the image to on success; empty for no push. */
  pushTag: string;
}

export interface RunningJob {
  jobId: string;
  /** Highest log offset the coordinator acknowledged to this agent. */
  ackedOffset: number;
}

// ---- agent -> coordinator ----

export interface HelloMessage {
  type: "hello";
  protocolVersion: number;
  name: string;
  labels: string[];
  capacity: number;
  agentVersion: string;
  running: RunningJob[];
}

export interface HeartbeatMessage {
  type: "heartbeat";
  running: string[];
}

export interface JobAcceptMessage {
  type: "job.accept";
  jobId: string;
}

export interface JobRejectMessage {
  type: "job.reject";
  jobId: string;
  reason: string;
}

export type JobPhase = "fetching" | "building" | "running" | "pushing" | "cleaning";

export interface JobPhaseMessage {
  type: "job.phase";
  jobId: string;
  phase: JobPhase;
}

/** Sent as a binary frame (see log-frame.ts), never as JSON text. */
export interface JobLogMessage {
  type: "job.log";
  jobId: string;
  offset: number;
  data: Uint8Array;
}

export interface JobFinishedMessage {
  type: "job.finished";
  jobId: string;
  result: JobResult;
  /** Container exit code when the container ran, otherwise null. */
  exitCode: number | null;
  /** Human-readable reason for a failure or cancel; empty for a pass. */
  reason: string;
  totalBytes: number;
  /** Hex SHA-256 of the complete log. */
  sha256: string;
}

export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
}

export type AgentMessage =
  | HelloMessage
  | HeartbeatMessage
  | JobAcceptMessage
  | JobRejectMessage
  | JobPhaseMessage
  | JobLogMessage
  | JobFinishedMessage
  | ErrorMessage;

// ---- coordinator -> agent ----

export interface WelcomeMessage {
  type: "welcome";
  protocolVersion: number;
  heartbeatIntervalMs: number;
  /**
   * An agent with no jobs sends its heartbeat only every this many intervals (1 when a coordinator
   * older than this field leaves it out).
   */
  idleHeartbeatEvery: number;
  leaseMs: number;
  offerTimeoutMs: number;
  logFlushIntervalMs: number;
  maxChunkBytes: number;
  maxLogBytes: number;
  /** Jobs from `hello.running` whose leases the coordinator keeps. */
  resumed: RunningJob[];
  /** Jobs from `hello.running` the agent must stop. */
  cancel: string[];
}

export interface JobAssignMessage {
  type: "job.assign";
  jobId: string;
  spec: JobSpec;
}

export interface JobCancelMessage {
  type: "job.cancel";
  jobId: string;
  reason: string;
  graceMs: number;
}

export interface LogAckMessage {
  type: "log.ack";
  jobId: string;
  offset: number;
}

export interface LogRewindMessage {
  type: "log.rewind";
  jobId: string;
  offset: number;
}

export interface FinishedAckMessage {
  type: "finished.ack";
  jobId: string;
}

export type CoordinatorMessage =
  | WelcomeMessage
  | JobAssignMessage
  | JobCancelMessage
  | LogAckMessage
  | LogRewindMessage
  | FinishedAckMessage
  | ErrorMessage;
