import type { Job, JobStore, NewJob } from "./job-store.js";

interface Waiting {
  job: NewJob;
  resolve: (r: { job: Job; created: boolean }) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for intake: webhooks that arrive in the same turn of the event loop are stored in
 * one transaction, and all that arrive while a disk sync runs share the next one, so a burst costs
 * a few syncs instead of one per webhook. Each caller still answers only after its job is on disk.
 */
export class IntakeBatcher {
  private waiting: Waiting[] = [];

  constructor(
    private readonly store: JobStore,
    private readonly onCreated: (jobs: Job[]) => void,
  ) {}

  submit(job: NewJob): Promise<{ job: Job; created: boolean }> {
    return new Promise((resolve, reject) => {
      if (this.waiting.length === 0) setImmediate(() => this.flush());
      this.waiting.push({ job, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    let results: Array<{ job: Job; created: boolean }>;
    try {
      results = this.store.createJobs(
        batch.map((w) => w.job),
        Date.now(),
      );
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    const created = results.filter((r) => r.created).map((r) => r.job);
    // Dispatch need not wait for the disk; the answers to Harbormaster do.
    if (created.length > 0) this.onCreated(created);
    this.store.syncToDisk().then(
      () => batch.forEach((w, i) => w.resolve(results[i] as { job: Job; created: boolean })),
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    );
  }
}
