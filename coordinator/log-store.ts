import { createHash, type Hash } from "node:crypto";
import {
  createReadStream,
  fdatasyncSync,
  fstatSync,
  mkdirSync,
  openSync,
  closeSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { SerialFdatasync } from "./serial-fdatasync.js";

export type AppendOutcome =
  /** Bytes were appended (or were all already there); `length` is the new length. */
  | { kind: "ok"; length: number }
  /** The chunk starts after the current end: the sender must rewind to `length`. */
  | { kind: "gap"; length: number }
  /** The log would grow beyond the limit. */
  | { kind: "full"; length: number };

/**
 * Where small logs live: rows of the job database, written inside its turn transaction, so a
 * short job's log costs no file of its own and no fsync of its own (the WAL sync that other
 * changes wait for covers it).
 */
export interface InlineLogs {
  /** The chunks of a job's log in order (uncommitted ones of this turn included). */
  inlineChunks(jobId: number): Buffer[];
  /** Adds a chunk at `offset` in the turn transaction. */
  addInline(jobId: number, offset: number, data: Uint8Array): void;
  /** Deletes a job's chunks in the turn transaction. */
  dropInline(jobId: number): void;
  /** Calls `fn` once the open turn transaction has committed (at once when none is open). */
  afterCommit(fn: () => void): void;
  commit(): void;
  /** Resolves once everything committed so far survives a power loss. */
  syncToDisk(): Promise<void>;
  /** The same, on the calling thread: for rare paths that need it now. */
  syncToDiskNow(): void;
}

/** Logs up to this size stay in the database; a log that grows past it moves to a file. */
export const INLINE_LOG_MAX_BYTES = 64 * 1024;

interface OpenLog {
  /** The file and its descriptor, synced one fdatasync at a time; null while the log is inline. */
  file: SerialFdatasync | null;
  /** Bytes written. */
  length: number;
  /** Bytes known to be on disk; -1 when an earlier life wrote some that may not be. */
  synced: number;
  /** SHA-256 of every byte, kept while appending; null when the log was opened part-written. */
  hash: Hash | null;
}

function writeAll(fd: number, data: Uint8Array): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written);
}

function removeIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

const concat = (chunks: Buffer[]): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));

/**
 * Append-only job logs addressed by byte offset. A log starts in the job database (see
 * InlineLogs) and moves to a file of its own, `<id>.log`, once it outgrows INLINE_LOG_MAX_BYTES.
 * Appends happen only at the current end; the overlap of a resend is dropped. Bytes count as
 * stored once synced: callers acknowledge only `durableLength`. `flush` syncs in the thread
 * pool, so streaming logs do not stall the event loop; `syncNow` is for the rare paths that need
 * durability at once.
 */
export class LogStore {
  private readonly open = new Map<number, OpenLog>();

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly inline: InlineLogs,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  path(jobId: number): string {
    return join(this.dir, `${jobId}.log`);
  }

  /**
   * Where a log that is not open is: its rows win over a file, since a file beside rows is a
   * move to a file that a crash interrupted before the rows were deleted.
   */
  private stored(jobId: number): { chunks: Buffer[]; fileSize: number | null } {
    const chunks = this.inline.inlineChunks(jobId);
    if (chunks.length > 0) return { chunks, fileSize: null };
    const st = statSync(this.path(jobId), { throwIfNoEntry: false });
    return { chunks, fileSize: st ? st.size : null };
  }

  private handle(jobId: number): OpenLog {
    const found = this.open.get(jobId);
    if (found) return found;
    const { chunks, fileSize } = this.stored(jobId);
    let log: OpenLog;
    if (fileSize === null) {
      // A stale file from an interrupted move holds nothing the rows do not.
      if (chunks.length > 0) removeIfThere(this.path(jobId));
      const length = chunks.reduce((n, c) => n + c.length, 0);
      log = { file: null, length, synced: length === 0 ? 0 : -1, hash: null };
      if (length === 0) log.hash = createHash("sha256");
    } else {
      log = this.openFile(jobId, "a");
    }
    this.open.set(jobId, log);
    return log;
  }

  private openFile(jobId: number, flags: "a" | "w"): OpenLog {
    const fd = openSync(this.path(jobId), flags);
    const length = fstatSync(fd).size;
    const log: OpenLog = {
      file: null,
      length,
      // What an earlier life wrote may not have been synced: the first sync covers it.
      synced: length === 0 ? 0 : -1,
      hash: length === 0 ? createHash("sha256") : null,
    };
    log.file = new SerialFdatasync(fd, () => log.synced < log.length);
    return log;
  }

  /** Bytes written so far, synced or not (what readers may see). */
  length(jobId: number): number {
    const log = this.open.get(jobId);
    if (log) return log.length;
    const { chunks, fileSize } = this.stored(jobId);
    return fileSize ?? chunks.reduce((n, c) => n + c.length, 0);
  }

  /** Bytes known to be on disk: what may be acknowledged. A closed log is synced. */
  durableLength(jobId: number): number {
    const log = this.open.get(jobId);
    if (log) return Math.max(0, log.synced);
    return this.length(jobId);
  }

  append(jobId: number, offset: number, data: Buffer): AppendOutcome {
    const log = this.handle(jobId);
    if (offset > log.length) return { kind: "gap", length: log.length };
    const skip = log.length - offset;
    if (skip >= data.length) return { kind: "ok", length: log.length };
    const fresh = skip > 0 ? data.subarray(skip) : data;
    if (log.length + fresh.length > this.maxBytes) return { kind: "full", length: log.length };
    if (log.file) {
      writeAll(log.file.fd, fresh);
    } else if (log.length + fresh.length <= INLINE_LOG_MAX_BYTES) {
      this.inline.addInline(jobId, log.length, fresh);
    } else {
      this.moveToFile(jobId, log, fresh);
    }
    log.length += fresh.length;
    log.hash?.update(fresh);
    return { kind: "ok", length: log.length };
  }

  /**
   * A log outgrew the database: its rows and the new bytes go to its file, which is synced before
   * the rows are deleted (acknowledged bytes must be on disk somewhere at every moment). Once
   * per large log, so the sync may run on the event loop.
   */
  private moveToFile(jobId: number, log: OpenLog, fresh: Buffer): void {
    const fd = openSync(this.path(jobId), "w");
    try {
      for (const chunk of [...this.inline.inlineChunks(jobId), fresh]) writeAll(fd, chunk);
      fdatasyncSync(fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.inline.dropInline(jobId);
    log.file = new SerialFdatasync(fd, () => log.synced < log.length);
    log.synced = log.length + fresh.length;
  }

  /**
   * Makes everything written to the given logs (all open ones when omitted) durable: files by
   * fdatasync in the thread pool, inline logs by the database's commit and WAL sync (shared with
   * whatever else waits for it). Rejects when a sync fails; those bytes stay unacknowledged.
   */
  async flush(jobIds?: Iterable<number>): Promise<void> {
    const waits: Array<Promise<void>> = [];
    const inline: Array<{ log: OpenLog; target: number }> = [];
    for (const id of jobIds ?? [...this.open.keys()]) {
      const log = this.open.get(id);
      if (!log || log.synced >= log.length) continue;
      if (log.file) waits.push(this.syncFile(log, log.file));
      else inline.push({ log, target: log.length });
    }
    if (inline.length > 0) waits.push(this.syncInline(inline));
    await Promise.all(waits);
  }

  private async syncFile(log: OpenLog, file: SerialFdatasync): Promise<void> {
    const target = log.length;
    await file.sync();
    if (target > log.synced) log.synced = target;
  }

  private async syncInline(logs: Array<{ log: OpenLog; target: number }>): Promise<void> {
    // The rows go out with the turn's commit, which other changes of the turn share.
    await new Promise<void>((resolve) => this.inline.afterCommit(resolve));
    await this.inline.syncToDisk();
    for (const { log, target } of logs) if (target > log.synced) log.synced = target;
  }

  /**
   * The log's length to record with the job's result, once it may be recorded. A file is synced
   * first. Rows need no sync of their own: they commit before the result does, and the WAL keeps
   * that order through a power loss, so the result never survives without them.
   */
  async resultLength(jobId: number): Promise<number> {
    const log = this.open.get(jobId);
    if (log && !log.file) return log.length;
    await this.flush([jobId]);
    return this.durableLength(jobId);
  }

  /** Synchronous sync of one log, or of every open log: for paths that are rare and need it now. */
  syncNow(jobId?: number): void {
    const logs = jobId === undefined ? [...this.open.values()] : [this.open.get(jobId)];
    const inline: OpenLog[] = [];
    for (const log of logs) {
      if (!log || log.synced >= log.length) continue;
      if (!log.file) {
        inline.push(log);
        continue;
      }
      const target = log.length;
      fdatasyncSync(log.file.fd);
      log.synced = target;
    }
    if (inline.length > 0) {
      this.inline.commit();
      this.inline.syncToDiskNow();
      for (const log of inline) log.synced = log.length;
    }
  }

  /** Syncs (when needed) and closes a finished job's log. */
  close(jobId: number): void {
    const log = this.open.get(jobId);
    if (!log) return;
    // An inline log needs no sync here: its rows commit with the result that closes it.
    if (log.file) this.syncNow(jobId);
    this.open.delete(jobId);
    log.file?.close();
  }

  /** Moves the log of an attempt aside (to a file), so a retry starts a fresh log at offset 0. */
  archive(jobId: number, attempt: number): void {
    this.close(jobId);
    const aside = join(this.dir, `${jobId}.attempt-${attempt}.log`);
    const chunks = this.inline.inlineChunks(jobId);
    if (chunks.length > 0) {
      const fd = openSync(aside, "w");
      try {
        for (const chunk of chunks) writeAll(fd, chunk);
      } finally {
        closeSync(fd);
      }
      this.inline.dropInline(jobId);
    }
    try {
      renameSync(this.path(jobId), aside);
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
    const { chunks, fileSize } = this.stored(jobId);
    if (fileSize === null) {
      for (const chunk of chunks) hash.update(chunk);
      return hash.digest("hex");
    }
    try {
      for await (const chunk of createReadStream(this.path(jobId))) hash.update(chunk as Buffer);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    return hash.digest("hex");
  }

  /** Reads up to `max` bytes from `offset`. */
  read(jobId: number, offset: number, max: number): NodeJS.ReadableStream | null {
    const log = this.open.get(jobId);
    const length = this.length(jobId);
    if (offset >= length) return null;
    const end = Math.min(length, offset + max);
    if (log ? log.file === null : this.stored(jobId).fileSize === null) {
      return Readable.from([concat(this.inline.inlineChunks(jobId)).subarray(offset, end)]);
    }
    return createReadStream(this.path(jobId), { start: offset, end: end - 1 });
  }
}
