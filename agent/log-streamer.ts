import { createHash, type Hash } from "node:crypto";
import { Writable } from "node:stream";
import type { JobLogMessage } from "../protocol/messages.js";
import { UnackedBytes } from "./unacked-bytes.js";

/** Chunks sent but not yet acknowledged, at most. */
const IN_FLIGHT_CHUNKS = 8;

export interface LogStreamerOptions {
  jobId: string;
  maxChunkBytes: number;
  maxLogBytes: number;
  flushIntervalMs: number;
  /** Unacknowledged bytes kept in memory; more go to the spill file. */
  memoryBytes: number;
  /** Unacknowledged bytes the spill file may hold; beyond it writers wait (backpressure). */
  spillBytes: number;
  spillPath: string;
  /** Sends a frame; returns false when there is no connection (the bytes stay buffered). */
  send: (msg: JobLogMessage) => boolean;
}

/**
 * The job log as the agent keeps it: every byte written gets an offset; bytes are sent in chunks of
 * at most `maxChunkBytes` and kept until the coordinator acknowledges them, so they can be resent
 * after a reconnect or a rewind (in memory, spilled to disk beyond a limit). Writers wait only
 * when the spill file is full too.
 */
export class LogStreamer {
  readonly writable: Writable;
  private readonly unacked: UnackedBytes;
  private readonly hash: Hash = createHash("sha256");
  private sentOffset = 0;
  private total = 0;
  private truncated = false;
  /** Whether the last send went through; decides between waiting and spilling. */
  private connected = true;
  private timer: NodeJS.Timeout | null = null;
  private held: (() => void) | null = null;
  /** `finish` waiting for the last byte to be handed to the connection. */
  private allSent: (() => void) | null = null;

  constructor(private opts: LogStreamerOptions) {
    this.unacked = new UnackedBytes({
      memoryBytes: opts.memoryBytes,
      spillBytes: opts.spillBytes,
      spillPath: opts.spillPath,
    });
    this.writable = new Writable({
      highWaterMark: opts.maxChunkBytes,
      write: (chunk: Buffer, _enc, cb) => this.append(chunk, cb),
    });
  }

  /** Timing and limits come from the coordinator's welcome; they may change on reconnect. */
  configure(opts: Partial<Omit<LogStreamerOptions, "jobId" | "send">>): void {
    this.opts = { ...this.opts, ...opts };
  }

  get totalBytes(): number {
    return this.total;
  }

  get acked(): number {
    return this.unacked.acked;
  }

  /** Writes agent-side text (phase banners, git output) into the log. */
  line(text: string): void {
    this.writable.write(Buffer.from(text.endsWith("\n") ? text : `${text}\n`));
  }

  private append(chunk: Buffer, cb: (err?: Error | null) => void): void {
    let data = chunk;
    const room = this.opts.maxLogBytes - this.total;
    if (data.length > room) {
      data = data.subarray(0, Math.max(0, room));
      if (!this.truncated) {
        this.truncated = true;
        const note = Buffer.from(`\n[phab-dock-ci: log truncated at ${this.opts.maxLogBytes} bytes]\n`);
        data = Buffer.concat([data.subarray(0, Math.max(0, data.length - note.length)), note]);
      }
    }
    if (data.length > 0) {
      this.unacked.append(data, this.connected);
      this.total += data.length;
      this.hash.update(data);
    }
    if (this.total - this.sentOffset >= this.opts.maxChunkBytes) this.flush();
    else this.arm();
    if (this.mustWait()) this.held = () => cb();
    else cb();
  }

  /**
   * Backpressure, not buffering: while connected, the writer waits once memory holds its limit of
   * unacknowledged bytes (the coordinator is slower than the container). Only a lost connection
   * lets bytes spill to disk, and a full spill file holds the writer too.
   */
  private mustWait(): boolean {
    return this.unacked.full || (this.connected && this.unacked.bytesInMemory >= this.opts.memoryBytes);
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.opts.flushIntervalMs);
  }

  /** Sends every unsent byte, in chunks. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // A window of chunks in flight keeps the socket's send buffer, and so memory, small.
    const window = IN_FLIGHT_CHUNKS * this.opts.maxChunkBytes;
    while (this.sentOffset < this.total && this.sentOffset - this.unacked.acked < window) {
      const chunk = this.unacked.slice(this.sentOffset, this.opts.maxChunkBytes);
      if (chunk.length === 0) return;
      const ok = this.opts.send({
        type: "job.log",
        jobId: this.opts.jobId,
        offset: this.sentOffset,
        data: chunk,
      });
      if (!ok) {
        this.connected = false;
        return;
      }
      this.connected = true;
      this.sentOffset += chunk.length;
    }
    if (this.allSent && this.sentOffset >= this.total) this.allSent();
  }

  /** The coordinator made bytes up to `offset` durable. */
  ack(offset: number): void {
    if (this.applyAck(offset) && this.sentOffset < this.total) this.flush();
  }

  /** The connection is gone: from now on bytes spill to disk instead of holding the writer. */
  disconnected(): void {
    this.connected = false;
    this.releaseIfAllowed();
  }

  private releaseIfAllowed(): void {
    if (this.held && !this.mustWait()) {
      const release = this.held;
      this.held = null;
      release();
    }
  }

  /** Drops acknowledged bytes; returns false when nothing new was acknowledged. */
  private applyAck(offset: number): boolean {
    if (offset <= this.unacked.acked) return false;
    this.unacked.ack(offset);
    if (this.sentOffset < this.unacked.acked) this.sentOffset = this.unacked.acked;
    this.releaseIfAllowed();
    return true;
  }

  /** Resend from `offset` (a gap on the coordinator, or a reconnect). */
  rewind(offset: number): void {
    this.applyAck(offset);
    this.connected = true;
    this.sentOffset = Math.max(this.unacked.acked, Math.min(offset, this.total));
    this.flush();
  }

  /**
   * Ends the log and resolves once every byte has been sent (while disconnected: after the
   * reconnect has sent them). The result can then follow the last chunk at once: the coordinator
   * makes the log durable before it records the result, and asks for a rewind if bytes are
   * missing. Bytes stay kept for resends until acknowledged, or until the result is.
   */
  async finish(): Promise<{ totalBytes: number; sha256: string }> {
    await new Promise<void>((resolve) => this.writable.end(resolve));
    this.flush();
    if (this.sentOffset < this.total) {
      await new Promise<void>((resolve) => {
        this.allSent = resolve;
      });
      this.allSent = null;
    }
    return { totalBytes: this.total, sha256: this.hash.digest("hex") };
  }

  /** Stops timers and releases anyone waiting, so an abandoned job does not hang. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.unacked.dispose();
    const waiters = [this.held, this.allSent];
    this.held = null;
    this.allSent = null;
    for (const w of waiters) w?.();
  }
}
