import type { JobResult } from "../protocol/messages.js";

/**
 * Job lifecycle: queued -> running (job.accept) -> finished. A lost job with retries left goes back
 * to queued. Offers (job.assign sent, no answer yet) live only in memory: after a restart an
 * unanswered offer is simply a queued job again.
 */
export type JobState = "queued" | "running" | "finished";

/** What intake stores: everything needed to run and report a job, already validated. */
export interface NewJob {
  targetPhid: string;
  repositoryUri: string;
  ref: string;
  commit: string;
  labels: string[];
  /** Free-form facts from the webhook shown on the job page (diff, revision, build, project…). */
  meta: Record<string, string>;
}

export interface Job extends NewJob {
  id: number;
  state: JobState;
  result: JobResult | null;
  reason: string;
  exitCode: number | null;
  agent: string | null;
  attempt: number;
  leaseExpiresAt: number | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  logBytes: number;
  logSha256: string;
  /** Set when someone asked to cancel the job; the agent is told and reports `cancelled`. */
  cancelReason: string;
  /** The cancel came from Harbormaster's side (abort, restart): the target no longer listens. */
  cancelSilent: boolean;
}

export type OutboxState = "pending" | "sent" | "dead";

export interface OutboxMessage {
  id: number;
  jobId: number;
  targetPhid: string;
  method: string;
  params: Record<string, unknown>;
  state: OutboxState;
  attempts: number;
  nextAttemptAt: number;
  lastError: string;
}

/** `sent`: delivered (at `at`); `pending`: try again at `at`; `dead`: never retried. */
export interface OutboxOutcome {
  id: number;
  state: OutboxState;
  at: number;
  error?: string;
}

/** A Conduit call to make later, written in the same transaction as the state change it reports. */
export interface OutboxEntry {
  /** The build target the call is about: calls of one target are delivered in order. */
  targetPhid: string;
  method: string;
  params: Record<string, unknown>;
}

export type QueuedJob = Pick<Job, "id" | "labels">;

export interface AgentRecord {
  name: string;
  labels: string[];
  capacity: number;
  version: string;
  connected: boolean;
  lastSeen: number;
}

export interface Finish {
  result: JobResult;
  reason: string;
  exitCode: number | null;
  logBytes: number;
  logSha256: string;
}

/**
 * Durable state of the coordinator. Every method that changes rows is atomic, so a crash at any
 * point leaves a consistent store. Changes are group-committed: those made in one turn of the
 * event loop become durable together at its end (reads see them at once). A caller about to tell
 * the outside world that a change happened calls `commit()` first, or defers the telling with
 * `afterCommit`.
 */
export interface JobStore {
  /** Makes every change so far durable now (against a crash of the process). */
  commit(): void;
  /** Runs `fn` once every change so far is durable: at once when nothing is pending. */
  afterCommit(fn: () => void): void;
  /**
   * Resolves once every change committed so far is on the disk itself (survives a power loss),
   * with the sync done off the event loop; callers that arrive while one runs share the next.
   */
  syncToDisk(): Promise<void>;
  /**
   * Inserts each job unless one exists for its target (also earlier in the same list) and commits
   * at once; returns each job and whether it was created. Await `syncToDisk` before telling anyone.
   */
  createJobs(jobs: NewJob[], now: number): Array<{ job: Job; created: boolean }>;
  getJob(id: number): Job | undefined;
  listJobs(limit: number, beforeId?: number): Job[];
  /** Queued jobs in order (oldest first), only what matching needs: the id and the labels. */
  queuedJobs(limit: number): QueuedJob[];
  jobsInState(state: JobState): Job[];
  /** Running jobs held by one agent. */
  jobsOfAgent(agent: string): Job[];
  /** Jobs not finished yet (queued, running), oldest first. */
  activeJobs(limit: number): Job[];
  requestCancel(id: number, reason: string, silent: boolean): boolean;
  countByState(): Record<JobState, number>;

  /** Returns a running job to the queue (front, by id); `attempt` grows when asked. */
  requeue(id: number, countAttempt: boolean, outbox: OutboxEntry[]): boolean;
  markRunning(id: number, agent: string, leaseExpiresAt: number, now: number, outbox: OutboxEntry[]): boolean;
  renewLeases(agent: string, jobIds: number[], leaseExpiresAt: number): void;
  expiredLeases(now: number): Job[];
  finishJob(id: number, finish: Finish, now: number, outbox: OutboxEntry[]): boolean;

  /** Pending messages that are due, skipping any target that has an earlier pending message. */
  dueOutbox(now: number, limit: number): OutboxMessage[];
  outboxForJob(jobId: number): OutboxMessage[];
  /** Counts attempts before they are made (commit before making them). */
  markAttempts(ids: number[]): void;
  /** Records what became of delivery attempts. */
  settleOutbox(outcomes: OutboxOutcome[]): void;
  /** Makes dead messages whose error starts with `errorPrefix` pending again; returns how many. */
  revive(errorPrefix: string, now: number): number;
  /** Gives up every pending message of a job (its target was aborted or restarted away). */
  dropPending(jobId: number, why: string): number;
  nextOutboxDue(): number | null;

  upsertAgent(agent: AgentRecord): void;
  setAgentConnected(name: string, connected: boolean, now: number): void;
  listAgents(): AgentRecord[];

  close(): void;
}
