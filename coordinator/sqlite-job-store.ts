import { fdatasyncSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import type {
  AgentRecord,
  Finish,
  Job,
  JobState,
  JobStore,
  NewJob,
  OutboxEntry,
  OutboxMessage,
  OutboxOutcome,
  QueuedJob,
} from "./job-store.js";
import { PdciError } from "../protocol/errors.js";
import type { InlineLogs } from "./log-store.js";
import { SerialFdatasync } from "./serial-fdatasync.js";
import { SCHEMA } from "./sqlite-schema.js";

type Row = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : Number(v ?? 0));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Most jobs ask for no labels: skip the parser for those. */
function parseLabels(v: unknown): string[] {
  const text = str(v);
  return text === "" || text === "[]" ? [] : (JSON.parse(text) as string[]);
}

function toJob(r: Row): Job {
  return {
    id: num(r["id"]),
    targetPhid: str(r["target_phid"]),
    repositoryUri: str(r["repository_uri"]),
    ref: str(r["ref"]),
    commit: str(r["commit_hash"]),
    labels: parseLabels(r["labels"]),
    meta: JSON.parse(str(r["meta"]) || "{}") as Record<string, string>,
    state: str(r["state"]) as JobState,
    result: (r["result"] ?? null) as Job["result"],
    reason: str(r["reason"]),
    exitCode: numOrNull(r["exit_code"]),
    agent: (r["agent"] ?? null) as string | null,
    attempt: num(r["attempt"]),
    leaseExpiresAt: numOrNull(r["lease_expires_at"]),
    createdAt: num(r["created_at"]),
    startedAt: numOrNull(r["started_at"]),
    finishedAt: numOrNull(r["finished_at"]),
    logBytes: num(r["log_bytes"]),
    logSha256: str(r["log_sha256"]),
    cancelReason: str(r["cancel_reason"]),
    cancelSilent: num(r["cancel_silent"]) === 1,
  };
}

function toOutbox(r: Row): OutboxMessage {
  return {
    id: num(r["id"]),
    jobId: num(r["job_id"]),
    targetPhid: str(r["target_phid"]),
    method: str(r["method"]),
    params: JSON.parse(str(r["params"])) as Record<string, unknown>,
    state: str(r["state"]) as OutboxMessage["state"],
    attempts: num(r["attempts"]),
    nextAttemptAt: num(r["next_attempt_at"]),
    lastError: str(r["last_error"]),
  };
}

/** JobStore on one SQLite file in WAL mode; all calls are synchronous and short. */
export class SqliteJobStore implements JobStore, InlineLogs {
  private readonly db: Database.Database;
  /** Prepared once per SQL text: preparing is a large share of a small query's cost. */
  private readonly statements = new Map<string, Database.Statement>();
  /** Callbacks waiting for the open turn transaction to commit. */
  private waiting: Array<() => void> = [];
  private commitScheduled = false;
  /** Our own descriptor of the WAL file, for syncToDisk. */
  private wal: SerialFdatasync | null = null;

  /**
   * Durability: every commit survives a crash of the process (WAL). Only intake also waits for
   * the disk (`syncToDisk`), because Harbormaster never repeats a webhook it got a 202 for.
   * Everything else a power loss could take back is recovered by the protocol: a running job
   * whose agent does not list it is run again, and a repeated final message is checked against
   * the target first (see Reporter).
   */
  constructor(private readonly file: string) {
    this.db = new Database(file);
    // One coordinator owns its data directory: an exclusive lock, taken at the first access and
    // held, saves the file-lock calls every transaction would make, keeps the WAL index in memory
    // instead of a shared-memory file, and stops a second coordinator on the same data.
    this.db.pragma("locking_mode = EXCLUSIVE");
    this.db.pragma("busy_timeout = 1000");
    try {
      this.db.pragma("journal_mode = WAL");
    } catch (err) {
      this.db.close();
      if ((err as { code?: unknown }).code === "SQLITE_BUSY") {
        throw new PdciError(
          "data_locked",
          `${file} is in use by another coordinator (one per data directory)`,
        );
      }
      throw err;
    }
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(SCHEMA);
  }

  /**
   * Runs `fn` atomically inside the turn transaction, opening it (and scheduling its commit at
   * the end of this turn) when none is open. A commit costs a write of every page it touched, so
   * the state changes of a busy turn (many agents' messages) share one. `fn` runs in a savepoint:
   * if it throws, only its own changes are rolled back.
   */
  private write<T>(fn: () => T): T {
    this.openTurn();
    return this.db.transaction(fn)();
  }

  private openTurn(): void {
    if (this.db.inTransaction) return;
    this.db.exec("BEGIN");
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setImmediate(() => {
      this.commitScheduled = false;
      this.commit();
    });
  }

  commit(): void {
    if (this.db.open && this.db.inTransaction) {
      try {
        this.db.exec("COMMIT");
      } catch (err) {
        // The disk refused the commit: what this turn changed is gone, while sockets may already
        // have seen it. Stop here; a restart recovers from the last commit.
        if (this.db.inTransaction) this.db.exec("ROLLBACK");
        throw err;
      }
    }
    const waiting = this.waiting;
    this.waiting = [];
    for (const fn of waiting) fn();
  }

  /**
   * Committed transactions live in the WAL file until a checkpoint copies them (which syncs, with
   * synchronous = NORMAL). Syncing the WAL file ourselves makes every commit so far survive a
   * power loss, like synchronous = FULL would, but in the thread pool instead of on the event
   * loop. (fdatasync on any descriptor of a file flushes all of its data, whoever wrote it.)
   */
  syncToDisk(): Promise<void> {
    this.wal ??= new SerialFdatasync(openSync(`${this.file}-wal`, "r+"));
    return this.wal.sync();
  }

  syncToDiskNow(): void {
    this.wal ??= new SerialFdatasync(openSync(`${this.file}-wal`, "r+"));
    fdatasyncSync(this.wal.fd);
  }

  inlineChunks(jobId: number): Buffer[] {
    return this.prepare("SELECT data FROM log_chunks WHERE job_id = ? ORDER BY offset")
      .pluck()
      .all(jobId) as Buffer[];
  }

  addInline(jobId: number, offset: number, data: Uint8Array): void {
    this.runWrite("INSERT INTO log_chunks (job_id, offset, data) VALUES (?, ?, ?)", jobId, offset, data);
  }

  dropInline(jobId: number): void {
    this.runWrite("DELETE FROM log_chunks WHERE job_id = ?", jobId);
  }

  afterCommit(fn: () => void): void {
    if (this.db.open && this.db.inTransaction) this.waiting.push(fn);
    else fn();
  }

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  private row(sql: string, ...args: unknown[]): Row | undefined {
    return this.prepare(sql).get(...args) as Row | undefined;
  }

  private rows(sql: string, ...args: unknown[]): Row[] {
    return this.prepare(sql).all(...args) as Row[];
  }

  private changed(sql: string, ...args: unknown[]): boolean {
    return this.runWrite(sql, ...args) > 0;
  }

  /** One statement that changes rows, in the turn transaction; returns how many it changed. */
  private runWrite(sql: string, ...args: unknown[]): number {
    const stmt = this.prepare(sql);
    this.openTurn();
    // One statement is atomic by itself: no savepoint needed.
    return stmt.run(...args).changes;
  }

  /** Queues Conduit calls for a job; inside the caller's transaction. */
  private addOutbox(jobId: number, entries: OutboxEntry[], now: number): void {
    if (entries.length === 0) return;
    const insert = this.prepare(
      `INSERT INTO outbox (job_id, target_phid, method, params, state, next_attempt_at, created_at)
       VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
    );
    for (const e of entries) insert.run(jobId, e.targetPhid, e.method, JSON.stringify(e.params), now, now);
  }

  createJobs(jobs: NewJob[], now: number): Array<{ job: Job; created: boolean }> {
    const results = this.write(() => jobs.map((job) => this.insertJob(job, now)));
    this.commit();
    return results;
  }

  private insertJob(job: NewJob, now: number): { job: Job; created: boolean } {
    const existing = this.row("SELECT * FROM jobs WHERE target_phid = ?", job.targetPhid);
    if (existing) return { job: toJob(existing), created: false };
    const info = this.prepare(
      `INSERT INTO jobs (target_phid, repository_uri, ref, commit_hash, labels, meta, state, created_at)
         VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)`,
    ).run(
      job.targetPhid,
      job.repositoryUri,
      job.ref,
      job.commit,
      JSON.stringify(job.labels),
      JSON.stringify(job.meta),
      now,
    );
    // The row as inserted, without reading it back (the column defaults, spelled out).
    const created: Job = {
      id: Number(info.lastInsertRowid),
      targetPhid: job.targetPhid,
      repositoryUri: job.repositoryUri,
      ref: job.ref,
      commit: job.commit,
      labels: [...job.labels],
      meta: { ...job.meta },
      state: "queued",
      result: null,
      reason: "",
      exitCode: null,
      agent: null,
      attempt: 0,
      leaseExpiresAt: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      logBytes: 0,
      logSha256: "",
      cancelReason: "",
      cancelSilent: false,
    };
    return { job: created, created: true };
  }

  getJob(id: number): Job | undefined {
    const r = this.row("SELECT * FROM jobs WHERE id = ?", id);
    return r ? toJob(r) : undefined;
  }

  listJobs(limit: number, beforeId?: number): Job[] {
    const before = beforeId ?? Number.MAX_SAFE_INTEGER;
    return this.rows("SELECT * FROM jobs WHERE id < ? ORDER BY id DESC LIMIT ?", before, limit).map(toJob);
  }

  queuedJobs(limit: number): QueuedJob[] {
    // Dispatch reads this on every pass, mostly over jobs already offered: keep the rows small.
    return this.rows("SELECT id, labels FROM jobs WHERE state = 'queued' ORDER BY id LIMIT ?", limit).map(
      (r) => ({ id: num(r["id"]), labels: parseLabels(r["labels"]) }),
    );
  }

  jobsInState(state: JobState): Job[] {
    return this.rows("SELECT * FROM jobs WHERE state = ? ORDER BY id", state).map(toJob);
  }

  jobsOfAgent(agent: string): Job[] {
    return this.rows("SELECT * FROM jobs WHERE agent = ? AND state = 'running' ORDER BY id", agent).map(
      toJob,
    );
  }

  activeJobs(limit: number): Job[] {
    return this.rows("SELECT * FROM jobs WHERE state != 'finished' ORDER BY id LIMIT ?", limit).map(toJob);
  }

  requestCancel(id: number, reason: string, silent: boolean): boolean {
    return this.changed(
      "UPDATE jobs SET cancel_reason = ?, cancel_silent = ? WHERE id = ? AND state != 'finished'",
      reason,
      silent ? 1 : 0,
      id,
    );
  }

  countByState(): Record<JobState, number> {
    const counts: Record<JobState, number> = { queued: 0, running: 0, finished: 0 };
    for (const r of this.rows("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")) {
      counts[str(r["state"]) as JobState] = num(r["n"]);
    }
    return counts;
  }

  requeue(id: number, countAttempt: boolean, outbox: OutboxEntry[]): boolean {
    return this.write(() => {
      const ok = this.changed(
        `UPDATE jobs SET state = 'queued', agent = NULL, lease_expires_at = NULL,
           attempt = attempt + ? WHERE id = ? AND state = 'running'`,
        countAttempt ? 1 : 0,
        id,
      );
      if (ok) this.addOutbox(id, outbox, Date.now());
      return ok;
    });
  }

  markRunning(
    id: number,
    agent: string,
    leaseExpiresAt: number,
    now: number,
    outbox: OutboxEntry[],
  ): boolean {
    return this.write(() => {
      const ok = this.changed(
        `UPDATE jobs SET state = 'running', agent = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?)
         WHERE id = ? AND state = 'queued'`,
        agent,
        leaseExpiresAt,
        now,
        id,
      );
      if (ok) this.addOutbox(id, outbox, now);
      return ok;
    });
  }

  renewLeases(agent: string, jobIds: number[], leaseExpiresAt: number): void {
    if (jobIds.length === 0) return;
    const stmt = this.prepare(
      "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND agent = ? AND state = 'running'",
    );
    this.write(() => {
      for (const id of jobIds) stmt.run(leaseExpiresAt, id, agent);
    });
  }

  expiredLeases(now: number): Job[] {
    return this.rows("SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < ?", now).map(toJob);
  }

  finishJob(id: number, f: Finish, now: number, outbox: OutboxEntry[]): boolean {
    return this.write(() => {
      const ok = this.changed(
        `UPDATE jobs SET state = 'finished', result = ?, reason = ?, exit_code = ?, log_bytes = ?,
           log_sha256 = ?, finished_at = ?, lease_expires_at = NULL
         WHERE id = ? AND state != 'finished'`,
        f.result,
        f.reason,
        f.exitCode,
        f.logBytes,
        f.logSha256,
        now,
        id,
      );
      if (ok) this.addOutbox(id, outbox, now);
      return ok;
    });
  }

  dueOutbox(now: number, limit: number): OutboxMessage[] {
    return this.rows(
      `SELECT o.* FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ?
         AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target_phid = o.target_phid
                         AND p.state = 'pending' AND p.id < o.id)
       ORDER BY o.id LIMIT ?`,
      now,
      limit,
    ).map(toOutbox);
  }

  outboxForJob(jobId: number): OutboxMessage[] {
    return this.rows("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", jobId).map(toOutbox);
  }

  markAttempts(ids: number[]): void {
    const stmt = this.prepare("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?");
    this.write(() => {
      for (const id of ids) stmt.run(id);
    });
  }

  settleOutbox(outcomes: OutboxOutcome[]): void {
    const sent = this.prepare("UPDATE outbox SET state = 'sent', sent_at = ? WHERE id = ?");
    const other = this.prepare(
      "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
    );
    this.write(() => {
      for (const o of outcomes) {
        if (o.state === "sent") sent.run(o.at, o.id);
        else other.run(o.state, o.at, o.error ?? "", o.id);
      }
    });
  }

  revive(errorPrefix: string, now: number): number {
    return this.runWrite(
      "UPDATE outbox SET state = 'pending', next_attempt_at = ? WHERE state = 'dead' AND substr(last_error, 1, ?) = ?",
      now,
      errorPrefix.length,
      errorPrefix,
    );
  }

  dropPending(jobId: number, why: string): number {
    return this.runWrite(
      "UPDATE outbox SET state = 'dead', last_error = ? WHERE job_id = ? AND state = 'pending'",
      why,
      jobId,
    );
  }

  nextOutboxDue(): number | null {
    const r = this.row("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = 'pending'");
    return r && r["t"] !== null ? num(r["t"]) : null;
  }

  upsertAgent(a: AgentRecord): void {
    this.runWrite(
      `INSERT INTO agents (name, labels, capacity, version, connected, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET labels = excluded.labels, capacity = excluded.capacity,
           version = excluded.version, connected = excluded.connected, last_seen = excluded.last_seen`,
      a.name,
      JSON.stringify(a.labels),
      a.capacity,
      a.version,
      a.connected ? 1 : 0,
      a.lastSeen,
    );
  }

  setAgentConnected(name: string, connected: boolean, now: number): void {
    this.runWrite(
      "UPDATE agents SET connected = ?, last_seen = ? WHERE name = ?",
      connected ? 1 : 0,
      now,
      name,
    );
  }

  listAgents(): AgentRecord[] {
    return this.rows("SELECT * FROM agents ORDER BY name").map((r) => ({
      name: str(r["name"]),
      labels: JSON.parse(str(r["labels"]) || "[]") as string[],
      capacity: num(r["capacity"]),
      version: str(r["version"]),
      connected: num(r["connected"]) === 1,
      lastSeen: num(r["last_seen"]),
    }));
  }

  close(): void {
    if (!this.db.open) return;
    this.commit();
    this.db.close();
    this.wal?.close();
  }
}
