import { cappedExponentialDelay } from "../protocol/backoff.js";
import { errorMessage } from "../protocol/errors.js";
import type { JobResult } from "../protocol/messages.js";
import type { ConduitConfig } from "./config.js";
import {
  type ConduitClient,
  isAuthRefusal,
  isDuplicateArtifact,
  isRetryable,
  redactSecret,
} from "./conduit-client.js";
import type { Job, JobStore, OutboxEntry, OutboxMessage, OutboxOutcome } from "./job-store.js";
import type { Logger } from "./logger.js";

/** Key of the URI artifact on each target; one per target, so a resend is a harmless duplicate. */
export const ARTIFACT_KEY = "phab-dock-ci.job";
const BATCH = 32;
/** Prefix of the error of a message parked because Conduit refused the token. */
const AUTH_PARKED = "token refused";

/**
 * The durable outbox to Conduit. State changes write their Conduit calls into the outbox in the
 * same transaction (see the `*Entries` methods); `run` delivers them in order per target, retrying
 * transport failures with capped backoff until Conduit accepts them.
 */
export class Reporter {
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private stopped = false;

  /** `client` is null when no Conduit is configured: nothing is queued or sent then. */
  constructor(
    private readonly store: JobStore,
    private readonly client: ConduitClient | null,
    private readonly conduit: ConduitConfig | null,
    private publicUrl: string,
    private readonly log: Logger,
  ) {}

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
        targetPhid: job.targetPhid,
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

  /**
   * The one final message of a target. It carries a unit result summarising the job, so the
   * reason of a failure (exit code, build error, cancel) shows in Harbormaster next to the link.
   */
  finishedEntries(job: Job, result: JobResult, reason: string, now: number): OutboxEntry[] {
    if (!this.client) return [];
    const duration = job.startedAt === null ? 0 : Math.max(0, now - job.startedAt) / 1000;
    const summary = result === "pass" ? "passed" : reason || result;
    return [
      {
        targetPhid: job.targetPhid,
        method: "harbormaster.sendmessage",
        params: {
          receiver: job.targetPhid,
          type: result === "pass" ? "pass" : "fail",
          unit: [
            {
              name: `job ${job.id}`,
              namespace: "phab-dock-ci",
              engine: "phab-dock-ci",
              result: result === "pass" ? "pass" : "fail",
              duration,
              details: `${summary}\n${this.jobUrl(job.id)}`,
              format: "text",
            },
          ],
        },
      },
    ];
  }

  /** A `work` message: the target stays waiting, but people see that the job was lost and why. */
  lostEntries(job: Job, why: string, retrying: boolean): OutboxEntry[] {
    if (!this.client) return [];
    const what = retrying ? "running it again on another agent" : "no retries left";
    return [
      {
        targetPhid: job.targetPhid,
        method: "harbormaster.sendmessage",
        params: {
          receiver: job.targetPhid,
          type: "work",
          unit: [
            {
              name: `job ${job.id} attempt ${job.attempt + 1} lost`,
              namespace: "phab-dock-ci",
              engine: "phab-dock-ci",
              result: "skip",
              details: `agent ${job.agent ?? "?"}: ${why}; ${what}`,
              format: "text",
            },
          ],
        },
      },
    ];
  }

  /** Starts delivering; messages parked on a bad token are tried again (the token may be fixed). */
  start(): void {
    if (!this.client) return;
    const revived = this.store.revive(AUTH_PARKED, Date.now());
    if (revived > 0) this.log.info(`retrying ${revived} Conduit message(s) that were refused for the token`);
    this.wake();
  }

  /** Delivers due messages now (called after a state change wrote to the outbox). */
  wake(): void {
    if (!this.client || this.stopped) return;
    if (this.inflight) return; // the running pass picks new messages up in its next round
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.deliverSoon(), 0);
  }

  private deliverSoon(): void {
    if (this.inflight || !this.client || this.stopped) return;
    this.inflight = this.deliver()
      .catch((err: unknown) => this.log.error(`outbox delivery: ${errorMessage(err)}`))
      .finally(() => {
        this.inflight = null;
        this.schedule();
      });
  }

  private schedule(): void {
    if (this.stopped) return;
    const next = this.store.nextOutboxDue();
    if (next === null) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.deliverSoon(), Math.max(0, next - Date.now()));
  }

  private async deliver(): Promise<void> {
    for (let round = 0; round < 1000 && !this.stopped; round++) {
      const due = this.store.dueOutbox(Date.now(), BATCH);
      if (due.length === 0) break;
      // Counted, and committed, before the calls: after a crash mid-call, the next attempt knows
      // it may be a repeat. One commit per batch, before and after, keeps the disk writes low.
      this.store.markAttempts(due.map((m) => m.id));
      this.store.commit();
      const outcomes = await Promise.all(due.map((m) => this.send(m)));
      this.store.settleOutbox(outcomes);
    }
  }

  private async send(m: OutboxMessage): Promise<OutboxOutcome> {
    const client = this.client as ConduitClient;
    const conduit = this.conduit as ConduitConfig;
    try {
      if (m.attempts > 0 && (await this.alreadyApplied(client, m))) {
        this.log.info(
          `conduit already has ${m.method} ${String(m.params["type"])} for job ${m.jobId}; not sending it again`,
        );
      } else {
        await client.call(m.method, m.params);
      }
      return { id: m.id, state: "sent", at: Date.now() };
    } catch (err) {
      if (isDuplicateArtifact(err)) return { id: m.id, state: "sent", at: Date.now() };
      const text = redactSecret(errorMessage(err), conduit.token);
      if (isRetryable(err)) {
        const delay = cappedExponentialDelay(m.attempts, {
          baseMs: conduit.retryBaseMs,
          capMs: conduit.retryCapMs,
        });
        this.log.warn(`conduit ${m.method} for job ${m.jobId} failed, retrying in ${delay} ms: ${text}`);
        return { id: m.id, state: "pending", at: Date.now() + delay, error: text };
      }
      if (isAuthRefusal(err)) {
        this.log.error(
          `conduit refused our token for ${m.method} of job ${m.jobId}; fix the token and restart the coordinator to send it: ${text}`,
        );
        return { id: m.id, state: "dead", at: Date.now(), error: `${AUTH_PARKED}: ${text}` };
      }
      this.log.error(`conduit refused ${m.method} for job ${m.jobId}; giving up: ${text}`);
      return { id: m.id, state: "dead", at: Date.now(), error: text };
    }
  }

  /**
   * Whether an earlier attempt of a final message reached Conduit although we never saw the answer
   * (a timeout, a crash): the target then has left "waiting". Only finals are checked; a repeated
   * artifact is answered as a duplicate, and a repeated `work` is harmless.
   */
  private async alreadyApplied(client: ConduitClient, m: OutboxMessage): Promise<boolean> {
    const type = m.params["type"];
    if (m.method !== "harbormaster.sendmessage" || (type !== "pass" && type !== "fail")) return false;
    const res = await client.call("harbormaster.target.search", { constraints: { phids: [m.targetPhid] } });
    const data = (res as { data?: Array<{ fields?: { status?: { value?: unknown } } }> } | null)?.data;
    const status = data?.[0]?.fields?.status?.value;
    return status === "target/passed" || status === "target/failed";
  }

  /** Stops delivering; in-flight calls are aborted and stay pending in the outbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.client?.close();
    await this.inflight;
  }
}
