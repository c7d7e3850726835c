import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
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

export type AppendOutcome =
  /** Bytes were appended (or were all already there); `length` is the new length. */
  | { kind: "ok"; length: number }
  /** The chunk starts after the current end: the sender must rewind to `length`. */
  | { kind: "gap"; length: number }
  /** The log would grow beyond the limit. */
  | { kind: "full"; length: number };

interface OpenLog {
  fd: number;
  length: number;
  dirty: boolean;
  /** SHA-256 of every byte, kept while appending; null when the log was opened part-written. */
  hash: Hash | null;
}

/**
 * Append-only job logs, one file per job, addressed by byte offset. Appends happen only at the
 * current end; the overlap of a resend is dropped. `sync()` makes appended bytes durable: callers
 * acknowledge only lengths returned after a sync.
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
    let log = this.open.get(jobId);
    if (!log) {
      const fd = openSync(this.path(jobId), "a");
      const length = fstatSync(fd).size;
      log = { fd, length, dirty: false, hash: length === 0 ? createHash("sha256") : null };
      this.open.set(jobId, log);
    }
    return log;
  }

  length(jobId: number): number {
    const log = this.open.get(jobId);
    if (log) return log.length;
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
    while (written < fresh.length) written += writeSync(log.fd, fresh, written);
    log.length += fresh.length;
    log.dirty = true;
    log.hash?.update(fresh);
    return { kind: "ok", length: log.length };
  }

  /** fsyncs every log written since the last sync. */
  sync(): void {
    for (const log of this.open.values()) {
      if (log.dirty) {
        fdatasyncSync(log.fd);
        log.dirty = false;
      }
    }
  }

  /** Syncs and closes a finished job's log. */
  close(jobId: number): void {
    const log = this.open.get(jobId);
    if (!log) return;
    if (log.dirty) fdatasyncSync(log.fd);
    closeSync(log.fd);
    this.open.delete(jobId);
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
