/**
 * Docker's multiplexed attach stream (containers without a TTY): a sequence of frames, each an 8-byte
 * header — stream type (0 stdin, 1 stdout, 2 stderr), three zero bytes, payload length as a
 * big-endian uint32 — followed by the payload. Chunks from the socket cut frames anywhere.
 */
import type { Writable } from "node:stream";

export interface FramePiece {
  stream: number;
  data: Buffer;
}

const HEADER_BYTES = 8;

export class DockerFrameDecoder {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFilled = 0;
  private payloadLeft = 0;
  private stream = 0;

  /**
   * Returns the payload bytes in `chunk`, in order, as slices of it (no copies). A payload cut by
   * chunk boundaries comes out as several pieces.
   */
  push(chunk: Buffer): FramePiece[] {
    const pieces: FramePiece[] = [];
    let pos = 0;
    // Every pass consumes at least one byte, so the loop ends after chunk.length passes at most.
    while (pos < chunk.length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - pos);
        pieces.push({ stream: this.stream, data: chunk.subarray(pos, pos + take) });
        pos += take;
        this.payloadLeft -= take;
        continue;
      }
      const take = Math.min(HEADER_BYTES - this.headerFilled, chunk.length - pos);
      chunk.copy(this.header, this.headerFilled, pos, pos + take);
      pos += take;
      this.headerFilled += take;
      if (this.headerFilled === HEADER_BYTES) {
        this.stream = this.header.readUInt8(0);
        this.payloadLeft = this.header.readUInt32BE(4);
        this.headerFilled = 0;
      }
    }
    return pieces;
  }

  /** True when the input so far ends inside a frame (a cut-off stream). */
  get midFrame(): boolean {
    return this.headerFilled > 0 || this.payloadLeft > 0;
  }
}

/**
 * Writes the payloads of the multiplexed `source` to `output` until `source` ends, pausing `source`
 * while `output` is full so that nothing piles up in memory. Resolves with the number of payload
 * bytes written; never ends `output`. Rejects when `source` fails or `output` closes first.
 */
export function pipeDemuxed(source: NodeJS.ReadableStream, output: Writable): Promise<number> {
  const decoder = new DockerFrameDecoder();
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer | string): void => {
      let full = false;
      for (const piece of decoder.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk)) {
        bytes += piece.data.length;
        if (!output.write(piece.data)) full = true;
      }
      if (full) {
        source.pause();
        output.once("drain", onDrain);
      }
    };
    const onDrain = (): void => {
      source.resume();
    };
    const cleanup = (): void => {
      source.removeListener("data", onData);
      source.removeListener("end", onEnd);
      source.removeListener("close", onEnd);
      source.removeListener("error", onError);
      output.removeListener("drain", onDrain);
      output.removeListener("close", onOutputClose);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(bytes);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onOutputClose = (): void => {
      cleanup();
      reject(new Error("the output closed before the container's output ended"));
    };
    source.on("data", onData);
    source.once("end", onEnd);
    source.once("close", onEnd); // a connection that drops without an end carries no more data either
    source.once("error", onError);
    output.once("close", onOutputClose);
  });
}
