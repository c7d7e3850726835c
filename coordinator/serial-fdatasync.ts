import { closeSync, fdatasync } from "node:fs";

/**
 * fdatasync of one file descriptor in the thread pool, one at a time. A sync asked for while one
 * runs waits for it and then for one more (its bytes may have been written after the running one
 * began), which every later asker shares. `stillNeeded` lets that one be skipped when the running
 * sync turned out to cover everything. `close` closes the descriptor at once, or when the last
 * sync ends: closing under a running sync could hand its number to another file.
 */
export class SerialFdatasync {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private closeWhenIdle = false;

  constructor(
    readonly fd: number,
    private readonly stillNeeded: () => boolean = () => true,
  ) {}

  /** Resolves once everything written to the descriptor before the call is on disk. */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    const queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        if (this.stillNeeded()) return this.start();
        this.closeIfIdle();
        return undefined;
      });
    this.queued = queued;
    return queued;
  }

  close(): void {
    this.closeWhenIdle = true;
    this.closeIfIdle();
  }

  private start(): Promise<void> {
    const running = new Promise<void>((resolve, reject) => {
      fdatasync(this.fd, (err) => {
        if (this.running === running) this.running = null;
        this.closeIfIdle();
        if (err) reject(err);
        else resolve();
      });
    });
    this.running = running;
    return running;
  }

  private closeIfIdle(): void {
    if (!this.closeWhenIdle || this.running || this.queued) return;
    this.closeWhenIdle = false;
    closeSync(this.fd);
  }
}
