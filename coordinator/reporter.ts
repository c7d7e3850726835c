import { cappedExponentialDelay } from "../protocol/backoff.js";
import { errorMessage } from "../protocol/errors.js";
import type { JobResult } from "../protocol/messages.js";
import type { ConduitConfig } from "./config.js";
import { ConduitClient, isDuplicateArtifact, isRetryable, redactSecret } from "./conduit-client.js";
import type { Job, JobStore, OutboxEntry, OutboxMessage } from "./job-store.js";
import type { Logger } from "./logger.js";

/** Key of the URI artifact on each target; one per target, so a resend is a harmless duplicate. */
export const ARTIFACT_KEY = "phab-dock-ci.job";
const BATCH = 32;

/**
 * The durable outbox to Conduit. State changes write their Conduit calls into the outbox in the
 * same transaction (see the `*Entries` methods); `run` delivers them in order per target, retrying
 * transport failures with capped backoff until Conduit accepts them.
 */
export class Reporter {
  private readonly client: ConduitClient | null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;

  constructor(
    private readonly store: JobStore,
    private readonly conduit: ConduitConfig | null,
    private publicUrl: string,
    private readonly log: Logger,
  ) {
    this.client = conduit
      ? new ConduitClient({ baseUrl: conduit.url, token: conduit.token, timeoutMs: conduit.timeoutMs })
      : null;
  }

  /** Used when no public URL is configured: links then point at the listening address. */
  setPublicUrl(url: string): void {
    this.publicUrl = url.replace(/\/+$/, "");
  }

  jobUrl(jobId: number): string {
    return `${this.publicUrl}/jobs/${jobId}`;
  }

  startedEntries(job: Job): OutboxEntry[] {
    if (!this.client) return [];
    return [
      {
        method: "harbormaster.createartifact",
        params: {
          buildTargetPHID: job.targetPhid,
          artifactKey: ARTIFACT_KEY,
          artifactType: "uri",
          artifactData: { uri: this.jobUrl(job.id), name: `phab-dock-ci job ${job.id}`, "ui.external": true },
        },
      },
    ];
  }

  finishedEntries(job: Job, result: JobResult): OutboxEntry[] {
    if (!this.client) return [];
    return [
      {
        method: "harbormaster.sendmessage",
        params: { receiver: job.targetPhid, type: result === "pass" ? "pass" : "fail" },
      },
    ];
  }

  /** Starts delivering; safe to call once. */
  start(): void {
    if (this.client) this.wake();
  }

  /** Delivers due messages now (called after a state change wrote to the outbox). */
  wake(): void {
    if (!this.client || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.deliver(), 0);
  }

  private schedule(): void {
    if (this.stopped) return;
    const next = this.store.nextOutboxDue();
    if (next === null) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.deliver(), Math.max(0, next - Date.now()));
  }

  private async deliver(): Promise<void> {
    if (this.running || !this.client) return;
    this.running = true;
    try {
      for (let round = 0; round < 1000 && !this.stopped; round++) {
        const due = this.store.dueOutbox(Date.now(), BATCH);
        if (due.length === 0) break;
        await Promise.all(due.map((m) => this.send(m)));
      }
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async send(m: OutboxMessage): Promise<void> {
    const client = this.client as ConduitClient;
    const conduit = this.conduit as ConduitConfig;
    try {
      await client.call(m.method, m.params);
      this.store.markSent(m.id, Date.now());
    } catch (err) {
      if (isDuplicateArtifact(err)) {
        this.store.markSent(m.id, Date.now());
        return;
      }
      const text = redactSecret(errorMessage(err), conduit.token);
      if (isRetryable(err)) {
        const delay = cappedExponentialDelay(m.attempts, {
          baseMs: conduit.retryBaseMs,
          capMs: conduit.retryCapMs,
        });
        this.store.markRetry(m.id, Date.now() + delay, text);
        this.log.warn(`conduit ${m.method} for job ${m.jobId} failed, retrying in ${delay} ms: ${text}`);
      } else {
        this.store.markDead(m.id, text);
        this.log.error(`conduit refused ${m.method} for job ${m.jobId}; giving up: ${text}`);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.client?.close();
  }
}
