import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { DockerFrameDecoder, pipeDemuxed } from "../agent/docker-demux.js";
import { Sink } from "./helpers/sink.js";

function frame(stream: number, payload: string | Buffer): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header.writeUInt8(stream, 0);
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

function decodeAll(chunks: Buffer[]): { stream: number; text: string }[] {
  const decoder = new DockerFrameDecoder();
  const merged: { stream: number; text: string }[] = [];
  for (const chunk of chunks) {
    for (const piece of decoder.push(chunk)) {
      const last = merged.at(-1);
      if (last && last.stream === piece.stream) last.text += piece.data.toString();
      else merged.push({ stream: piece.stream, text: piece.data.toString() });
    }
  }
  assert.equal(decoder.midFrame, false);
  return merged;
}

const wire = Buffer.concat([frame(1, "hello "), frame(2, "oops\n"), frame(1, ""), frame(1, "world\n")]);
const expected = [
  { stream: 1, text: "hello " },
  { stream: 2, text: "oops\n" },
  { stream: 1, text: "world\n" },
];

test("decodes frames in one chunk", () => {
  assert.deepEqual(decodeAll([wire]), expected);
});

test("decodes frames cut at every possible position, headers included", () => {
  for (let cut = 0; cut <= wire.length; cut++) {
    assert.deepEqual(decodeAll([wire.subarray(0, cut), wire.subarray(cut)]), expected, `cut at ${cut}`);
  }
});

test("decodes a stream fed one byte at a time", () => {
  const bytes = Array.from({ length: wire.length }, (_, i) => wire.subarray(i, i + 1));
  assert.deepEqual(decodeAll(bytes), expected);
});

test("reports a stream that ends inside a frame", () => {
  const decoder = new DockerFrameDecoder();
  decoder.push(wire.subarray(0, 3));
  assert.equal(decoder.midFrame, true);
  decoder.push(wire.subarray(3, 10));
  assert.equal(decoder.midFrame, true);
});

test("handles payloads larger than a chunk", () => {
  const big = Buffer.alloc(100_000, 7);
  const data = frame(1, big);
  const decoder = new DockerFrameDecoder();
  let total = 0;
  for (let pos = 0; pos < data.length; pos += 4096) {
    for (const piece of decoder.push(data.subarray(pos, pos + 4096))) total += piece.data.length;
  }
  assert.equal(total, big.length);
});

test("pipeDemuxed pauses the source while the output is full and writes everything", async () => {
  const source = new PassThrough();
  const output = new Sink({ delayMs: 1, highWaterMark: 1024 });
  const done = pipeDemuxed(source, output);
  const payload = Buffer.alloc(4000, 1);
  let written = 0;
  let sawPause = false;
  for (let i = 0; i < 50; i++) {
    source.write(frame(i % 2 === 0 ? 1 : 2, payload));
    written += payload.length;
    if (source.isPaused()) sawPause = true;
  }
  source.end();
  assert.equal(await done, written);
  assert.equal(output.bytes, written);
  assert.ok(sawPause, "the source was paused at least once");
  assert.equal(output.writableEnded, false);
});

test("pipeDemuxed rejects when the source fails or the output closes", async () => {
  const failing = new PassThrough();
  const first = pipeDemuxed(failing, new Sink());
  failing.destroy(new Error("connection reset"));
  await assert.rejects(first, /connection reset/);
  const source = new PassThrough();
  const output = new Sink();
  const second = pipeDemuxed(source, output);
  output.destroy();
  await assert.rejects(second, /output closed/);
});
