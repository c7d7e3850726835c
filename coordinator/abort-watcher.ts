import { errorMessage } from "../protocol/errors.js";
import type { ConduitClient } from "./conduit-client.js";
import type { JobStore } from "./job-store.js";
import type { Logger } from "./logger.js";

/** Conduit search calls take at most 100 constraints per page. */
const PAGE = 100;
const MAX_ACTIVE = 5000;

interface TargetFacts {
  phid: string;
  buildPHID: string;
  generation: number;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
}

function searchData(result: unknown): Array<Record<string, unknown>> {
  const data = record(result)["data"];
  return Array.isArray(data) ? data.map(record) : [];
}

function targetFacts(item: Record<string, unknown>): TargetFacts | null {
  const fields = record(item["fields"]);
  const phid = item["phid"];
  const buildPHID = fields["buildPHID"];
  const generation = Number(fields["buildGeneration"]);
  if (typeof phid !== "string" || typeof buildPHID !== "string" || !Number.isFinite(generation)) return null;
  return { phid, buildPHID, generation };
}

/** Bounds the pages one search may take, so a misbehaving server cannot keep us looping. */
const MAX_PAGES = 50;

async function searchAll(client: ConduitClient, method: string, constraints: Record<string, unknown>) {
  const items: Array<Record<string, unknown>> = [];
  let after: unknown = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await client.call(method, { constraints, limit: PAGE, ...(after ? { after } : {}) });
    items.push(...searchData(res));
    after = record(record(res)["cursor"])["after"];
    if (typeof after !== "string" && typeof after !== "number") break;
  }
  return items;
}

const chunks = <T>(list: T[]): T[][] =>
  Array.from({ length: Math.ceil(list.length / PAGE) }, (_, i) => list.slice(i * PAGE, (i + 1) * PAGE));

/**
 * Harbormaster never tells anyone when a build is aborted or restarted, so the coordinator asks:
 * every interval it looks up the targets of its active jobs, their builds' status, and whether
 * those builds have targets of a newer generation. A job whose build was aborted or restarted is
 * cancelled through `cancel`, and nothing more is sent to its target.
 */
export class AbortWatcher {
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;

  constructor(
    private readonly client: ConduitClient,
    private readonly store: JobStore,
    private readonly intervalMs: number,
    private readonly cancel: (jobId: number, reason: string) => void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.polling ??= this.poll()
        .catch((err: unknown) => this.log.warn(`checking builds for aborts failed: ${errorMessage(err)}`))
        .finally(() => (this.polling = null));
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.polling;
  }

  /** One round; exported for tests that do not want to wait for the timer. */
  async poll(): Promise<void> {
    const jobs = this.store.activeJobs(MAX_ACTIVE);
    if (jobs.length === 0) return;
    const targets = new Map<string, TargetFacts>();
    for (const page of chunks(jobs.map((j) => j.targetPhid))) {
      for (const item of await searchAll(this.client, "harbormaster.target.search", { phids: page })) {
        const facts = targetFacts(item);
        if (facts) targets.set(facts.phid, facts);
      }
    }
    const builds = [...new Set([...targets.values()].map((t) => t.buildPHID))];
    const status = new Map<string, string>();
    const newest = new Map<string, number>();
    for (const page of chunks(builds)) {
      for (const item of await searchAll(this.client, "harbormaster.build.search", { phids: page })) {
        const value = record(record(item["fields"])["buildStatus"])["value"];
        if (typeof item["phid"] === "string" && typeof value === "string") status.set(item["phid"], value);
      }
      // Every generation's targets come back for a build; the highest generation is the live one.
      for (const item of await searchAll(this.client, "harbormaster.target.search", { buildPHIDs: page })) {
        const facts = targetFacts(item);
        if (facts) newest.set(facts.buildPHID, Math.max(newest.get(facts.buildPHID) ?? 0, facts.generation));
      }
    }
    for (const job of jobs) {
      const t = targets.get(job.targetPhid);
      if (!t) continue;
      const current = this.store.getJob(job.id);
      if (!current || current.state === "finished") continue;
      if (status.get(t.buildPHID) === "aborted") {
        this.cancel(job.id, "the build was aborted in Harbormaster");
      } else if ((newest.get(t.buildPHID) ?? 0) > t.generation) {
        this.cancel(job.id, "the build was restarted in Harbormaster (a newer target replaces this one)");
      }
    }
  }
}
