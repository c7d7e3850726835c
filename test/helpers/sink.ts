/** A Writable for tests that counts (and optionally keeps) what it receives, optionally slowly. */
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

export class Sink extends Writable {
  bytes = 0;
  /** The most bytes ever waiting in this stream's buffer. */
  maxBuffered = 0;
  private readonly kept: Buffer[] = [];
  private readonly keep: boolean;
  private readonly delayMs: number;

  constructor(opts: { keep?: boolean; delayMs?: number; highWaterMark?: number } = {}) {
    super({ highWaterMark: opts.highWaterMark ?? 16 * 1024 });
    this.keep = opts.keep ?? true;
    this.delayMs = opts.delayMs ?? 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    this.maxBuffered = Math.max(this.maxBuffered, this.writableLength);
    if (this.keep) this.kept.push(Buffer.from(chunk));
    if (this.delayMs > 0) setTimeout(done, this.delayMs);
    else done();
  }

  text(): string {
    return Buffer.concat(this.kept).toString("utf8");
  }

  /** Waits until `text` was received; fails after `timeoutMs`. */
  async waitFor(text: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.text().includes(text)) {
      if (Date.now() > deadline) throw new Error(`"${text}" did not arrive; got: ${this.text().slice(-500)}`);
      await sleep(20);
    }
  }
}
