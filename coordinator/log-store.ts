import { createHash, type Hash } from "node:crypto";
import {
  createReadStream,
  fstatSync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { SerialFdatasync } from "./serial-fdatasync.js";

export type AppendOutcome =
  /** Bytes were appended (or were all already there); `length` is the new length. */
  | { kind: "ok"; length: number }
  /** The chunk starts after the current end: the sender must rewind to `length`. */
  | { kind: "gap"; length: number }
  /** The log would grow beyond the limit. */
  | { kind: "full"; length: number };

interface OpenLog {
  /** The descriptor, synced one fdatasync at a time in the thread pool. */
  file: SerialFdatasync;
  /** Bytes written. */
  length: number;
  /** Bytes known to be on disk. */
  synced: number;
  /** SHA-256 of every byte, kept while appending; null when the log was opened part-written. */
  hash: Hash | null;
}

/**
 * Append-only job logs, one file per job, addressed by byte offset. Appends happen only at the
 * current end; the overlap of a resend is dropped. Bytes count as stored once synced: callers
 * acknowledge only `durableLength`. `flush` syncs in the thread pool, so streaming logs do not
 * stall the event loop; `syncNow` is for the rare paths that need durability at once.
 */
export class LogStore {
  private readonly open = new Map<number, OpenLog>();

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  path(jobId: number): string {
    return join(this.dir, `${jobId}.log`);
  }

  private handle(jobId: number): OpenLog {
    const found = this.open.get(jobId);
    if (found) return found;
    const fd = openSync(this.path(jobId), "a");
    const length = fstatSync(fd).size;
    const log: OpenLog = {
      file: new SerialFdatasync(fd, () => log.synced < log.length),
      length,
      // What an earlier life wrote may not have been synced: the first sync covers it.
      synced: length === 0 ? 0 : -1,
      hash: length === 0 ? createHash("sha256") : null,
    };
    this.open.set(jobId, log);
    return log;
  }

  /** Bytes written so far, synced or not (what readers may see). */
  length(jobId: number): number {
    const log = this.open.get(jobId);
    if (log) return log.length;
    return this.fileSize(jobId);
  }

  /** Bytes known to be on disk: what may be acknowledged. A closed log is synced. */
  durableLength(jobId: number): number {
    const log = this.open.get(jobId);
    if (log) return Math.max(0, log.synced);
    return this.fileSize(jobId);
  }

  private fileSize(jobId: number): number {
    try {
      return statSync(this.path(jobId)).size;
    } catch {
      return 0;
    }
  }

  append(jobId: number, offset: number, data: Buffer): AppendOutcome {
    const log = this.handle(jobId);
    if (offset > log.length) return { kind: "gap", length: log.length };
    const skip = log.length - offset;
    if (skip >= data.length) return { kind: "ok", length: log.length };
    const fresh = skip > 0 ? data.subarray(skip) : data;
    if (log.length + fresh.length > this.maxBytes) return { kind: "full", length: log.length };
    let written = 0;
    while (written < fresh.length) written += writeSync(log.file.fd, fresh, written);
    log.length += fresh.length;
    log.hash?.update(fresh);
    return { kind: "ok", length: log.length };
  }

  /**
   * Makes everything written to the given logs (all open ones when omitted) durable, with the
   * fdatasyncs in the thread pool. Rejects when a sync fails; those bytes stay unacknowledged.
   */
  async flush(jobIds?: Iterable<number>): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const id of jobIds ?? [...this.open.keys()]) {
      const log = this.open.get(id);
      if (log && log.synced < log.length) waits.push(this.syncInPool(log));
    }
    await Promise.all(waits);
  }

  private async syncInPool(log: OpenLog): Promise<void> {
    const target = log.length;
    await log.file.sync();
    if (target > log.synced) log.synced = target;
  }

  /** Synchronous sync of one log, or of every open log: for paths that are rare and need it now. */
  syncNow(jobId?: number): void {
    const logs = jobId === undefined ? [...this.open.values()] : [this.open.get(jobId)];
    for (const log of logs) {
      if (!log || log.synced >= log.length) continue;
      const target = log.length;
      fdatasyncSync(log.file.fd);
      log.synced = target;
    }
  }

  /** Syncs (when needed) and closes a finished job's log. */
  close(jobId: number): void {
    const log = this.open.get(jobId);
    if (!log) return;
    this.syncNow(jobId);
    this.open.delete(jobId);
    log.file.close();
  }

  /** Moves the log of an attempt aside, so a retry starts a fresh log at offset 0. */
  archive(jobId: number, attempt: number): void {
    this.close(jobId);
    try {
      renameSync(this.path(jobId), join(this.dir, `${jobId}.attempt-${attempt}.log`));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  closeAll(): void {
    for (const id of [...this.open.keys()]) this.close(id);
  }

  async sha256(jobId: number): Promise<string> {
    const kept = this.open.get(jobId)?.hash;
    if (kept) return kept.copy().digest("hex");
    const hash = createHash("sha256");
    try {
      for await (const chunk of createReadStream(this.path(jobId))) hash.update(chunk as Buffer);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    return hash.digest("hex");
  }

  /** Reads up to `max` bytes from `offset`. */
  read(jobId: number, offset: number, max: number): NodeJS.ReadableStream | null {
    const length = this.length(jobId);
    if (offset >= length) return null;
    return createReadStream(this.path(jobId), { start: offset, end: Math.min(length, offset + max) - 1 });
  }
}
