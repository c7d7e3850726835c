import type { AgentMessage, JobFinishedMessage, RunningJob } from "../protocol/messages.js";
import type { AgentSession } from "./agent-session.js";
import type { CoordinatorConfig } from "./config.js";
import type { Finish, Job, JobStore } from "./job-store.js";
import type { LogStore } from "./log-store.js";
import type { Logger } from "./logger.js";
import type { Reporter } from "./reporter.js";
import type { Scheduler } from "./scheduler.js";

/** Shortest time between two log fsyncs (and so between acks); small against the agents' window. */
const ACK_SYNC_INTERVAL_MS = 10;

/**
 * What happens to jobs when agents talk: claims, heartbeats, logs, results, lost leases.
 * All durable changes go through the store; the in-memory sessions only mirror them.
 */
export class JobController {
  private readonly ackWaiting = new Map<number, AgentSession>();
  private ackScheduled = false;
  private lastSync = 0;
  /** Jobs whose job.finished is being handled: its acknowledgement will stand for the log's. */
  private readonly finishing = new Set<number>();
  private leaseTimer: NodeJS.Timeout | null = null;
  /** What running jobs are doing (fetching, building…): shown in the UI, not worth a disk write. */
  private readonly phases = new Map<number, string>();

  constructor(
    private readonly store: JobStore,
    private readonly logs: LogStore,
    private readonly scheduler: Scheduler,
    private readonly reporter: Reporter,
    private readonly config: CoordinatorConfig,
    private readonly log: Logger,
  ) {}

  start(): void {
    // Running jobs get a fresh lease, so their agents can reconnect and resume before anything is
    // declared lost. (Offers lived in memory: those jobs are simply queued.)
    const lease = Date.now() + this.config.timing.leaseMs;
    for (const job of this.store.jobsInState("running"))
      if (job.agent) this.store.renewLeases(job.agent, [job.id], lease);
    const every = Math.max(10, Math.floor(this.config.timing.heartbeatIntervalMs / 2));
    this.leaseTimer = setInterval(() => this.sweepLeases(), every);
    this.leaseTimer.unref();
  }

  stop(): void {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
  }

  phaseOf(id: number): string {
    return this.phases.get(id) ?? "";
  }

  /** Decides which of the jobs an agent reports after (re)connecting it keeps. */
  resume(session: AgentSession, running: RunningJob[]): { resumed: RunningJob[]; cancel: string[] } {
    // The agent drops what is acked at once: everything written must be on disk first.
    this.logs.syncNow();
    const resumed: RunningJob[] = [];
    const cancel: string[] = [];
    const listed = new Set<number>();
    for (const r of running) {
      const id = Number(r.jobId);
      const job = Number.isSafeInteger(id) ? this.store.getJob(id) : undefined;
      if (job && job.state === "running" && job.agent === session.name && job.cancelReason) {
        // Cancelled while the agent was away: end it now, the agent drops it.
        cancel.push(r.jobId);
        listed.add(id);
        const logBytes = this.logs.length(id);
        this.complete(
          job,
          { result: "cancelled", reason: `cancelled: ${job.cancelReason}`, exitCode: null, logBytes },
          !job.cancelSilent,
        );
      } else if (job && job.state === "running" && job.agent === session.name) {
        listed.add(id);
        session.running.add(id);
        resumed.push({ jobId: r.jobId, ackedOffset: this.logs.length(id) });
      } else {
        cancel.push(r.jobId);
      }
    }
    this.store.renewLeases(session.name, [...listed], Date.now() + this.config.timing.leaseMs);
    // Jobs we think this agent holds but it does not list were lost with its previous life.
    for (const job of this.store.jobsOfAgent(session.name)) {
      if (!listed.has(job.id)) this.lost(job, "the agent restarted without it");
    }
    return { resumed, cancel };
  }

  /** A session closed: its offers go back to the queue; its running jobs keep their leases. */
  disconnected(session: AgentSession): void {
    for (const id of [...session.offers.keys()]) this.scheduler.withdraw(id);
    this.scheduler.kick();
  }

  handle(session: AgentSession, msg: AgentMessage): void {
    switch (msg.type) {
      case "heartbeat":
        return this.heartbeat(session, msg.running);
      case "job.accept":
        return this.accept(session, Number(msg.jobId));
      case "job.reject":
        return this.reject(session, Number(msg.jobId), msg.reason);
      case "job.phase":
        if (session.running.has(Number(msg.jobId))) this.phases.set(Number(msg.jobId), msg.phase);
        return;
      case "job.log":
        return this.appendLog(session, Number(msg.jobId), msg.offset, msg.data);
      case "job.finished":
        void this.finished(session, msg).catch((err: unknown) =>
          this.log.error(`finishing job ${msg.jobId}: ${String(err)}`),
        );
        return;
      case "error":
        this.log.warn(`agent ${session.name} reported ${msg.code}: ${msg.message}`);
        return;
      case "hello":
        session.send({ type: "error", code: "unexpected_hello", message: "hello was already received" });
        return;
    }
  }

  private heartbeat(session: AgentSession, running: string[]): void {
    const now = Date.now();
    session.lastSeen = now;
    if (running.length === 0) return; // an idle agent: no lease to renew
    const mine: number[] = [];
    for (const raw of running) {
      const id = Number(raw);
      if (session.running.has(id)) mine.push(id);
      else if (!session.offers.has(id) && !this.finishing.has(id)) {
        session.send({
          type: "job.cancel",
          jobId: raw,
          reason: "the coordinator does not know this job on this agent",
          graceMs: this.config.timing.cancelGraceMs,
        });
      }
    }
    this.store.renewLeases(session.name, mine, now + this.config.timing.leaseMs);
  }

  private accept(session: AgentSession, id: number): void {
    if (this.scheduler.offerOf(id) !== session) {
      session.send({ type: "job.cancel", jobId: String(id), reason: "offer expired", graceMs: 0 });
      return;
    }
    this.scheduler.withdraw(id);
    const job = this.store.getJob(id);
    const now = Date.now();
    const lease = now + this.config.timing.leaseMs;
    if (!job || !this.store.markRunning(id, session.name, lease, now, this.reporter.startedEntries(job))) {
      session.send({ type: "job.cancel", jobId: String(id), reason: "job is no longer queued", graceMs: 0 });
      return;
    }
    session.running.add(id);
    this.scheduler.settled(id);
    this.reporter.wake();
    this.log.info(`job ${id} started on ${session.name}`);
  }

  private reject(session: AgentSession, id: number, reason: string): void {
    if (this.scheduler.offerOf(id) !== session) return;
    this.scheduler.withdraw(id);
    this.scheduler.rejected(id, session.name);
    this.log.info(`agent ${session.name} rejected job ${id}: ${reason}`);
    this.scheduler.kick();
  }

  private appendLog(session: AgentSession, id: number, offset: number, data: Uint8Array): void {
    if (!session.running.has(id)) {
      session.send({ type: "error", code: "unknown_job", message: `job ${id} is not running on this agent` });
      return;
    }
    const outcome = this.logs.append(id, offset, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (outcome.kind === "gap") {
      session.send({ type: "log.rewind", jobId: String(id), offset: outcome.length });
      return;
    }
    if (outcome.kind === "full") {
      session.send({
        type: "error",
        code: "log_full",
        message: `job ${id} log exceeds ${this.config.timing.maxLogBytes} bytes`,
      });
    }
    this.ackWaiting.set(id, session);
    if (!this.ackScheduled) this.scheduleAcks();
  }

  private scheduleAcks(): void {
    this.ackScheduled = true;
    // One fsync covers every chunk that arrived since the last one; only synced bytes are acked.
    // Syncing at most every ACK_SYNC_INTERVAL_MS keeps fsyncs few when logs stream fast.
    const wait = this.lastSync + ACK_SYNC_INTERVAL_MS - Date.now();
    if (wait <= 0) setImmediate(() => this.flushAcks());
    else setTimeout(() => this.flushAcks(), wait);
  }

  /** Syncs the logs that got bytes (in the thread pool) and acks what is on disk. */
  private flushAcks(): void {
    const waiting = new Map(this.ackWaiting);
    this.ackWaiting.clear();
    // A job whose result is being recorded gets no log.ack: its log needs no sync for one.
    for (const id of this.finishing) waiting.delete(id);
    this.lastSync = Date.now();
    const ack = () => {
      for (const [id, session] of waiting) {
        // A job that ended (or is ending) here needs no log.ack: finished.ack or job.cancel follows.
        if (!session.running.has(id) || this.finishing.has(id)) continue;
        session.send({ type: "log.ack", jobId: String(id), offset: this.logs.durableLength(id) });
      }
    };
    this.logs
      .flush(waiting.keys())
      .then(ack, (err: unknown) => {
        // Unacked bytes stay with the agent, which sends them again after a reconnect.
        this.log.error(`syncing job logs failed: ${String(err)}`);
        ack();
      })
      .finally(() => {
        // One sync at a time: bytes that came in meanwhile are covered by the next one.
        this.ackScheduled = false;
        if (this.ackWaiting.size > 0) this.scheduleAcks();
      });
  }

  private async finished(session: AgentSession, msg: JobFinishedMessage): Promise<void> {
    const id = Number(msg.jobId);
    if (!session.running.has(id)) {
      // A duplicate, or a job that was taken away from this agent: acknowledge and ignore.
      session.send({ type: "finished.ack", jobId: msg.jobId });
      return;
    }
    // A repeat while the first is handled: that one answers.
    if (this.finishing.has(id)) return;
    // From here the result's acknowledgement covers the log: no separate log.ack (see flushAcks).
    this.finishing.add(id);
    try {
      const length = await this.logs.resultLength(id);
      // The job may have been lost or cancelled while the log synced.
      const current = this.store.getJob(id);
      if (!current || !this.owns(session, current)) {
        session.send({ type: "finished.ack", jobId: msg.jobId });
        return;
      }
      if (length < msg.totalBytes) {
        session.send({ type: "log.rewind", jobId: msg.jobId, offset: length });
        return;
      }
      const sha = await this.logs.sha256(id);
      const reason =
        sha === msg.sha256
          ? msg.reason
          : `${msg.reason} (log checksum mismatch: agent ${msg.sha256}, stored ${sha})`.trim();
      this.complete(
        current,
        { result: msg.result, reason, exitCode: msg.exitCode, logBytes: length, logSha256: sha },
        !current.cancelSilent,
      );
      session.running.delete(id);
      // The agent forgets the job once acked: the result must be on disk before it hears so.
      this.store.afterCommit(() => session.send({ type: "finished.ack", jobId: msg.jobId }));
    } finally {
      this.finishing.delete(id);
    }
  }

  /** Whether the job is unfinished and assigned to this agent session. */
  private owns(session: AgentSession, job: Job): boolean {
    return job.state !== "finished" && job.agent === session.name && session.running.has(job.id);
  }

  /**
   * Records the one final result of a job and queues its report (`report: false` when the target
   * no longer listens: its build was aborted or restarted).
   */
  complete(job: Job, finish: Omit<Finish, "logSha256"> & { logSha256?: string }, report = true): void {
    const now = Date.now();
    const entries = report ? this.reporter.finishedEntries(job, finish.result, finish.reason, now) : [];
    if (this.store.finishJob(job.id, { logSha256: "", ...finish }, now, entries)) {
      this.log.info(`job ${job.id} finished: ${finish.result}${finish.reason ? ` (${finish.reason})` : ""}`);
    }
    if (!report) this.store.dropPending(job.id, "the target no longer waits for messages");
    this.logs.close(job.id);
    this.phases.delete(job.id);
    this.scheduler.settled(job.id);
    this.reporter.wake();
    this.scheduler.kick();
  }

  /**
   * Cancels a job: a queued one (offered or not) ends at once; a running one is stopped by its agent
   * (docker stop with the grace period), which then reports `cancelled`. A running job whose agent
   * is not connected ends at once; the agent is told to drop it when it comes back.
   */
  cancel(id: number, reason: string, report: boolean): Job | undefined {
    const job = this.cancelNow(id, reason, report);
    // Callers answer at once (the cancel API): what they answer must be durable.
    this.store.commit();
    return job;
  }

  private cancelNow(id: number, reason: string, report: boolean): Job | undefined {
    const job = this.store.getJob(id);
    if (!job || job.state === "finished") return job;
    const session = job.agent ? this.scheduler.sessions.get(job.agent) : undefined;
    if (job.state === "running" && session?.running.has(id)) {
      this.store.requestCancel(id, reason, !report);
      session.send({
        type: "job.cancel",
        jobId: String(id),
        reason,
        graceMs: this.config.timing.cancelGraceMs,
      });
      this.log.info(`job ${id}: cancel sent to ${session.name} (${reason})`);
      return this.store.getJob(id);
    }
    this.scheduler.withdraw(id);
    session?.running.delete(id);
    this.logs.syncNow(id);
    this.complete(
      job,
      { result: "cancelled", reason: `cancelled: ${reason}`, exitCode: null, logBytes: this.logs.length(id) },
      report,
    );
    return this.store.getJob(id);
  }

  private sweepLeases(): void {
    for (const job of this.store.expiredLeases(Date.now()))
      this.lost(job, "its agent stopped renewing the lease");
  }

  /** A running job whose agent is gone: run it again elsewhere while retries last, else fail it. */
  private lost(job: Job, why: string): void {
    const session = job.agent ? this.scheduler.sessions.get(job.agent) : undefined;
    if (session?.running.delete(job.id)) {
      session.send({ type: "job.cancel", jobId: String(job.id), reason: `job lost: ${why}`, graceMs: 0 });
    }
    this.phases.delete(job.id);
    this.logs.syncNow(job.id);
    const logBytes = this.logs.length(job.id);
    if (job.cancelReason) {
      this.complete(
        job,
        { result: "cancelled", reason: `cancelled: ${job.cancelReason}`, exitCode: null, logBytes },
        !job.cancelSilent,
      );
      return;
    }
    const retrying = job.attempt < this.config.retries;
    this.log.warn(
      `job ${job.id} lost on ${job.agent ?? "?"} (${why}); ${retrying ? "queued again" : "failing it"}`,
    );
    if (retrying) {
      this.logs.archive(job.id, job.attempt);
      this.store.requeue(job.id, true, this.reporter.lostEntries(job, why, true));
      this.reporter.wake();
      this.scheduler.kick();
    } else {
      this.complete(job, { result: "fail", reason: `job lost: ${why}`, exitCode: null, logBytes });
    }
  }
}
