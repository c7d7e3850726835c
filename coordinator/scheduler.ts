import type { JobSpec } from "../protocol/messages.js";
import type { AgentSession } from "./agent-session.js";
import type { CoordinatorConfig } from "./config.js";
import type { Job, JobStore, QueuedJob } from "./job-store.js";
import type { Logger } from "./logger.js";

/** How many queued jobs one dispatch pass looks at per free slot; bounds work on a huge queue. */
const SCAN_PER_SLOT = 8;
const MAX_SCAN = 2000;

/**
 * Matches queued jobs to connected agents with free slots (offer, then claim). Dispatch runs on
 * the next tick after a kick, so a burst of webhooks or finishes costs one pass.
 */
export class Scheduler {
  readonly sessions = new Map<string, AgentSession>();
  /** Agents that rejected a job, so it is not offered to them again while queued. */
  private readonly rejectedBy = new Map<number, Set<string>>();
  /** Jobs offered with job.assign and not answered yet (in memory only; see JobState). */
  private readonly offeredTo = new Map<number, AgentSession>();
  private pending = false;
  private stopped = false;

  constructor(
    private readonly store: JobStore,
    private readonly config: CoordinatorConfig,
    private readonly log: Logger,
  ) {}

  kick(): void {
    if (this.pending || this.stopped) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.dispatch();
    });
  }

  rejected(jobId: number, agent: string): void {
    const set = this.rejectedBy.get(jobId) ?? new Set<string>();
    set.add(agent);
    this.rejectedBy.set(jobId, set);
  }

  /** Forgets per-job dispatch memory once a job is running or finished. */
  settled(jobId: number): void {
    this.rejectedBy.delete(jobId);
  }

  spec(job: Job): JobSpec {
    const { timing, limits } = this.config;
    return {
      repositoryUri: job.repositoryUri,
      ref: job.ref,
      commit: job.commit,
      timeoutMs: timing.jobTimeoutMs,
      cancelGraceMs: timing.cancelGraceMs,
      limits: { ...limits },
      pushTag: "",
    };
  }

  private dispatch(): void {
    const free = [...this.sessions.values()].filter((s) => !s.closed && s.freeSlots() > 0);
    const slots = free.reduce((n, s) => n + s.freeSlots(), 0);
    if (slots === 0) return;
    const jobs = this.store.queuedJobs(Math.min(MAX_SCAN, slots * SCAN_PER_SLOT + this.offeredTo.size));
    for (const job of jobs) {
      if (this.offeredTo.has(job.id)) continue;
      const agent = this.pick(free, job);
      if (!agent) continue;
      const full = this.store.getJob(job.id);
      if (full) this.offer(agent, full);
      if (free.every((s) => s.freeSlots() <= 0)) break;
    }
  }

  /** The matching agent with the most free slots spreads load across hosts. */
  private pick(free: AgentSession[], job: QueuedJob): AgentSession | undefined {
    const refused = this.rejectedBy.get(job.id);
    let best: AgentSession | undefined;
    for (const s of free) {
      if (s.freeSlots() <= 0 || !s.matches(job.labels) || refused?.has(s.name)) continue;
      if (!best || s.freeSlots() > best.freeSlots()) best = s;
    }
    return best;
  }

  private offer(agent: AgentSession, job: Job): void {
    const timer = setTimeout(() => {
      if (this.offeredTo.get(job.id) !== agent) return;
      this.log.warn(`agent ${agent.name} did not answer the offer of job ${job.id}; offering it again`);
      this.withdraw(job.id);
      this.kick();
    }, this.config.timing.offerTimeoutMs);
    agent.offers.set(job.id, timer);
    this.offeredTo.set(job.id, agent);
    agent.send({ type: "job.assign", jobId: String(job.id), spec: this.spec(job) });
  }

  /** The agent a job is offered to, if it is. */
  offerOf(jobId: number): AgentSession | undefined {
    return this.offeredTo.get(jobId);
  }

  /** Ends an offer (answered, refused, expired, or the agent left); the job stays queued. */
  withdraw(jobId: number): void {
    const agent = this.offeredTo.get(jobId);
    if (!agent) return;
    this.offeredTo.delete(jobId);
    const timer = agent.offers.get(jobId);
    if (timer !== undefined) clearTimeout(timer);
    agent.offers.delete(jobId);
  }

  stop(): void {
    this.stopped = true;
  }
}
