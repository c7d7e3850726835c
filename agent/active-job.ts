import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { AgentMessage, JobFinishedMessage, JobSpec } from "../protocol/messages.js";
import { CancelReason, type ContainerBackend } from "./container-backend.js";
import type { SourceCheckout } from "./source-checkout.js";
import { runJob } from "./job-runner.js";
import { LogStreamer, type LogStreamerOptions } from "./log-streamer.js";
import type { Logger } from "./logger.js";

export interface ActiveJobDeps {
  agentName: string;
  workDir: string;
  git: SourceCheckout;
  backend: ContainerBackend;
  send: (msg: AgentMessage) => boolean;
  /** How often job.finished is repeated until the coordinator acknowledges it. */
  resendEveryMs: number;
  streamer: Omit<LogStreamerOptions, "jobId" | "send" | "spillPath">;
  /** Where log bytes beyond the memory limit wait for acknowledgement. */
  spoolDir: string;
  log: Logger;
}

/**
 * One job on this agent, from job.accept to finished.ack: runs it, streams its log, and repeats
 * job.finished (right after the last log byte is sent) until the coordinator acknowledges it.
 */
export class ActiveJob {
  readonly streamer: LogStreamer;
  private readonly abort = new AbortController();
  private finished: JobFinishedMessage | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  private done = false;
  private hasEnded = false;
  private execution: Promise<void> | null = null;
  private readonly cleanups: Array<Promise<void>> = [];

  constructor(
    readonly id: string,
    readonly spec: JobSpec,
    private readonly deps: ActiveJobDeps,
  ) {
    const spillPath = join(
      deps.spoolDir,
      `job-${id.replace(/[^A-Za-z0-9]/g, "_")}-${randomBytes(3).toString("hex")}.log`,
    );
    this.streamer = new LogStreamer({ ...deps.streamer, jobId: id, spillPath, send: (m) => deps.send(m) });
  }

  /** The container has ended (the outcome is known), even if the log is not all acknowledged. */
  get ended(): boolean {
    return this.hasEnded;
  }

  run(): void {
    this.execution = this.execute().catch((err: unknown) =>
      this.deps.log.error(`job ${this.id}: ${String(err)}`),
    );
  }

  /** Resolves once the job's container, image and workspace are cleaned up. */
  async settled(): Promise<void> {
    await this.execution;
    await Promise.all(this.cleanups);
  }

  private async execute(): Promise<void> {
    const outcome = await runJob({
      jobId: this.id,
      spec: this.spec,
      agentName: this.deps.agentName,
      workDir: this.deps.workDir,
      git: this.deps.git,
      backend: this.deps.backend,
      log: this.streamer,
      signal: this.abort.signal,
      phase: (phase) => this.deps.send({ type: "job.phase", jobId: this.id, phase }),
      background: (work) => this.cleanups.push(work),
      warn: (message) => this.deps.log.warn(message),
    });
    this.hasEnded = true;
    const { totalBytes, sha256 } = await this.streamer.finish();
    if (this.done) return;
    this.finished = { type: "job.finished", jobId: this.id, ...outcome, totalBytes, sha256 };
    this.deps.log.info(`job ${this.id} ${outcome.result}${outcome.reason ? `: ${outcome.reason}` : ""}`);
    this.sendFinished();
  }

  private sendFinished(): void {
    if (!this.finished || this.done) return;
    this.deps.send(this.finished);
    if (this.resendTimer) clearTimeout(this.resendTimer);
    this.resendTimer = setTimeout(() => this.sendFinished(), this.deps.resendEveryMs);
  }

  /** After a reconnect: resend log bytes from the coordinator's durable length, and the result. */
  resume(ackedOffset: number): void {
    this.streamer.rewind(ackedOffset);
    this.sendFinished();
  }

  cancel(reason: string, graceMs: number): void {
    if (this.abort.signal.aborted) return;
    this.deps.log.warn(`job ${this.id}: cancel (${reason}), grace ${graceMs} ms`);
    this.abort.abort(new CancelReason(reason, graceMs));
  }

  /** The coordinator acknowledged the result; returns false if there was none to acknowledge. */
  acknowledged(): boolean {
    if (!this.finished) return false;
    this.dispose();
    return true;
  }

  /** Stops the job without reporting (the coordinator no longer expects it). */
  abandon(): void {
    // Nobody waits for this job's result any more, so there is no point in a grace period.
    this.abort.abort(new CancelReason("abandoned", 0));
    this.dispose();
  }

  private dispose(): void {
    this.done = true;
    if (this.resendTimer) clearTimeout(this.resendTimer);
    this.streamer.dispose();
  }
}
