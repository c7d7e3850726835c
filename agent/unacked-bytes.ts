import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface UnackedBytesOptions {
  /** Bytes kept in memory; beyond this, new bytes go to the spill file. */
  memoryBytes: number;
  /** Bytes the spill file may hold; beyond this, `full` is true and writers should wait. */
  spillBytes: number;
  /** Where to spill; created on first use, removed when everything is acknowledged. */
  spillPath: string;
}

/**
 * The log bytes of one job that the coordinator has not acknowledged yet: offsets [acked, end).
 * The oldest bytes live in memory; once that is full, newer bytes are appended to a spill file, so a
 * coordinator outage neither grows the agent's memory nor stalls the container. Spilling continues
 * until every byte is acknowledged, which keeps the order simple: memory, then file.
 */
export class UnackedBytes {
  private readonly memory: Buffer[] = [];
  private memoryLength = 0;
  private ackedOffset = 0;
  /** Offset of the first byte in the spill file; the file holds [spillStart, end). */
  private spillStart = -1;
  private spillLength = 0;
  private fd: number | null = null;

  constructor(private readonly opts: UnackedBytesOptions) {}

  get acked(): number {
    return this.ackedOffset;
  }

  get end(): number {
    return this.spillStart >= 0 ? this.spillStart + this.spillLength : this.ackedOffset + this.memoryLength;
  }

  get bytesInMemory(): number {
    return this.memoryLength;
  }

  get spilledBytes(): number {
    return this.spillLength;
  }

  /** The spill file is at its limit: the writer should wait for acknowledgements. */
  get full(): boolean {
    return this.spillLength >= this.opts.spillBytes;
  }

  /**
   * `mayExceedMemory`: the caller holds its writer back instead (connected, backpressure), so a
   * chunk that crosses the memory limit stays in memory rather than starting a spill.
   */
  append(data: Buffer, mayExceedMemory = false): void {
    if (data.length === 0) return;
    if (
      this.spillStart < 0 &&
      (mayExceedMemory || this.memoryLength + data.length <= this.opts.memoryBytes)
    ) {
      this.memory.push(data);
      this.memoryLength += data.length;
      return;
    }
    if (this.spillStart < 0) {
      this.spillStart = this.end;
      mkdirSync(dirname(this.opts.spillPath), { recursive: true });
      this.fd = openSync(this.opts.spillPath, "w+", 0o600);
    }
    let written = 0;
    while (written < data.length) {
      written += writeSync(
        this.fd as number,
        data,
        written,
        data.length - written,
        this.spillLength + written,
      );
    }
    this.spillLength += data.length;
  }

  /** Up to `max` bytes from offset `from` (at least `acked`); may return fewer at the memory/file edge. */
  slice(from: number, max: number): Buffer {
    const memoryEnd = this.ackedOffset + this.memoryLength;
    if (from < memoryEnd) {
      const parts: Buffer[] = [];
      let pos = this.ackedOffset;
      let want = Math.min(max, memoryEnd - from);
      for (const b of this.memory) {
        if (want <= 0) break;
        const bEnd = pos + b.length;
        if (bEnd > from) {
          const start = Math.max(0, from - pos);
          const piece = b.subarray(start, Math.min(b.length, start + want));
          parts.push(piece);
          want -= piece.length;
        }
        pos = bEnd;
      }
      return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
    }
    if (this.fd === null || from >= this.end) return Buffer.alloc(0);
    const length = Math.min(max, this.end - from);
    const out = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const n = readSync(this.fd, out, read, length - read, from - this.spillStart + read);
      if (n === 0) break;
      read += n;
    }
    return out.subarray(0, read);
  }

  /** Drops everything below `offset`; once all is acknowledged the spill file is removed. */
  ack(offset: number): void {
    const target = Math.min(offset, this.end);
    if (target <= this.ackedOffset) return;
    let drop = target - this.ackedOffset;
    while (drop > 0 && this.memory.length > 0) {
      const head = this.memory[0] as Buffer;
      if (head.length <= drop) {
        this.memory.shift();
        this.memoryLength -= head.length;
        drop -= head.length;
      } else {
        this.memory[0] = head.subarray(drop);
        this.memoryLength -= drop;
        drop = 0;
      }
    }
    this.ackedOffset = target;
    if (this.spillStart >= 0 && target >= this.end) this.removeSpill();
  }

  private removeSpill(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    rmSync(this.opts.spillPath, { force: true });
    this.spillStart = -1;
    this.spillLength = 0;
  }

  dispose(): void {
    if (this.spillStart >= 0) this.removeSpill();
  }
}
