import { createHash, type Hash } from "node:crypto";
import { Writable } from "node:stream";
import type { JobLogMessage } from "../protocol/messages.js";

export interface LogStreamerOptions {
  jobId: string;
  maxChunkBytes: number;
  maxLogBytes: number;
  flushIntervalMs: number;
  /** Unacked bytes above which writers are held back (backpressure instead of buffering). */
  highWaterBytes: number;
  /** Sends a frame; returns false when there is no connection (the bytes stay buffered). */
  send: (msg: JobLogMessage) => boolean;
}

/** Bytes from `ackedOffset` on that the coordinator has not yet acknowledged. */
interface Pending {
  buffers: Buffer[];
  bytes: number;
}

/**
 * The job log as the agent keeps it: every byte written gets an offset; bytes are sent in chunks of
 * at most `maxChunkBytes` and kept until the coordinator acknowledges them, so they can be resent
 * after a reconnect or a rewind. Writers wait while too many bytes are unacknowledged.
 */
export class LogStreamer {
  readonly writable: Writable;
  private readonly pending: Pending = { buffers: [], bytes: 0 };
  private readonly hash: Hash = createHash("sha256");
  private ackedOffset = 0;
  private sentOffset = 0;
  private total = 0;
  private truncated = false;
  private timer: NodeJS.Timeout | null = null;
  private held: (() => void) | null = null;
  private drained: (() => void) | null = null;

  constructor(private opts: LogStreamerOptions) {
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
    return this.ackedOffset;
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
      this.pending.buffers.push(data);
      this.pending.bytes += data.length;
      this.total += data.length;
      this.hash.update(data);
    }
    if (this.total - this.sentOffset >= this.opts.maxChunkBytes) this.flush();
    else this.arm();
    if (this.pending.bytes > this.opts.highWaterBytes) this.held = () => cb();
    else cb();
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
    while (this.sentOffset < this.total) {
      const chunk = this.slice(this.sentOffset, this.opts.maxChunkBytes);
      const ok = this.opts.send({
        type: "job.log",
        jobId: this.opts.jobId,
        offset: this.sentOffset,
        data: chunk.toString("base64"),
      });
      if (!ok) return;
      this.sentOffset += chunk.length;
    }
  }

  /** Bytes [from, from + max) out of the pending buffers; `from` is at least ackedOffset. */
  private slice(from: number, max: number): Buffer {
    const parts: Buffer[] = [];
    let pos = this.ackedOffset;
    let want = max;
    for (const b of this.pending.buffers) {
      if (want <= 0) break;
      const end = pos + b.length;
      if (end > from) {
        const start = Math.max(0, from - pos);
        const piece = b.subarray(start, Math.min(b.length, start + want));
        parts.push(piece);
        want -= piece.length;
      }
      pos = end;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** The coordinator made bytes up to `offset` durable. */
  ack(offset: number): void {
    if (offset <= this.ackedOffset) return;
    let drop = Math.min(offset, this.total) - this.ackedOffset;
    while (drop > 0 && this.pending.buffers.length > 0) {
      const head = this.pending.buffers[0] as Buffer;
      if (head.length <= drop) {
        this.pending.buffers.shift();
        drop -= head.length;
        this.pending.bytes -= head.length;
      } else {
        this.pending.buffers[0] = head.subarray(drop);
        this.pending.bytes -= drop;
        drop = 0;
      }
    }
    this.ackedOffset = Math.min(offset, this.total);
    if (this.sentOffset < this.ackedOffset) this.sentOffset = this.ackedOffset;
    if (this.held && this.pending.bytes <= this.opts.highWaterBytes) {
      const release = this.held;
      this.held = null;
      release();
    }
    if (this.drained && this.ackedOffset === this.total) this.drained();
  }

  /** Resend from `offset` (a gap on the coordinator, or a reconnect). */
  rewind(offset: number): void {
    this.ack(offset);
    this.sentOffset = Math.max(this.ackedOffset, Math.min(offset, this.total));
    this.flush();
  }

  /** Ends the log and resolves once every byte is acknowledged. */
  async finish(): Promise<{ totalBytes: number; sha256: string }> {
    await new Promise<void>((resolve) => this.writable.end(resolve));
    this.flush();
    if (this.ackedOffset < this.total) {
      await new Promise<void>((resolve) => {
        this.drained = resolve;
      });
    }
    return { totalBytes: this.total, sha256: this.hash.digest("hex") };
  }

  /** Stops timers and releases anyone waiting, so an abandoned job does not hang. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const waiters = [this.held, this.drained];
    this.held = null;
    this.drained = null;
    for (const w of waiters) w?.();
  }
}
