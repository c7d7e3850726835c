import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { LogStreamer } from "../agent/log-streamer.js";
import { UnackedBytes } from "../agent/unacked-bytes.js";
import type { JobLogMessage } from "../protocol/messages.js";
import { tempDir } from "./helpers/stack.js";

test("unacked bytes spill to disk beyond the memory limit and read back in order", (t) => {
  const spillPath = join(tempDir(t, "pdci-spill-"), "s.log");
  const u = new UnackedBytes({ memoryBytes: 100, spillBytes: 10_000, spillPath });
  const data = randomBytes(1000);
  for (let i = 0; i < 1000; i += 70) u.append(data.subarray(i, i + 70));
  assert.equal(u.end, 1000);
  assert.ok(u.bytesInMemory <= 100);
  assert.ok(existsSync(spillPath));
  const back: Buffer[] = [];
  for (let at = 0; at < 1000;) {
    const piece = u.slice(at, 64);
    assert.ok(piece.length > 0);
    back.push(piece);
    at += piece.length;
  }
  assert.deepEqual(Buffer.concat(back), data);
  u.ack(500);
  assert.deepEqual(u.slice(500, 500), data.subarray(500, 1000));
  u.ack(1000);
  assert.equal(existsSync(spillPath), false, "spill file removed once all is acknowledged");
  u.append(Buffer.from("after"));
  assert.equal(u.bytesInMemory, 5, "back to memory after draining");
});

test("a log written while disconnected is resent whole after a rewind, with the same hash", async (t) => {
  const dir = tempDir(t, "pdci-spill-");
  const frames: JobLogMessage[] = [];
  let connected = false;
  const s = new LogStreamer({
    jobId: "7",
    maxChunkBytes: 4096,
    maxLogBytes: 1 << 30,
    flushIntervalMs: 5,
    memoryBytes: 10_000,
    spillBytes: 1 << 20,
    spillPath: join(dir, "7.log"),
    send: (m) => {
      if (connected) frames.push(m);
      return connected;
    },
  });
  const written = randomBytes(200_000);
  for (let i = 0; i < written.length; i += 3000) {
    await new Promise<void>((resolve) => s.writable.write(written.subarray(i, i + 3000), () => resolve()));
  }
  assert.equal(frames.length, 0);
  assert.ok(existsSync(join(dir, "7.log")), "spilled while disconnected");
  connected = true;
  const finished = s.finish();
  s.rewind(0);
  // Acknowledge what arrived, as the coordinator does, until everything is acknowledged.
  for (let i = 0; i < 1000 && s.acked < written.length; i++) {
    const last = frames.at(-1);
    if (last) s.ack(last.offset + last.data.length);
    await new Promise((r) => setTimeout(r, 1));
  }
  const { totalBytes, sha256 } = await finished;
  const received = Buffer.concat(frames.map((f) => Buffer.from(f.data)));
  assert.equal(totalBytes, written.length);
  assert.deepEqual(received, written);
  assert.equal(sha256, createHash("sha256").update(written).digest("hex"));
  assert.equal(existsSync(join(dir, "7.log")), false);
});

test("writers wait when the spill file is full, and go on after acknowledgements", async (t) => {
  const frames: JobLogMessage[] = [];
  const s = new LogStreamer({
    jobId: "8",
    maxChunkBytes: 1000,
    maxLogBytes: 1 << 30,
    flushIntervalMs: 5,
    memoryBytes: 1000,
    spillBytes: 2000,
    spillPath: join(tempDir(t, "pdci-spill-"), "8.log"),
    send: (m) => (frames.push(m), true),
  });
  let done = false;
  const writes = (async () => {
    for (let i = 0; i < 10; i++)
      await new Promise<void>((r) => s.writable.write(Buffer.alloc(1000, i), () => r()));
    done = true;
  })();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false, "held back while nothing is acknowledged");
  for (let i = 0; i < 200 && !done; i++) {
    s.ack(s.totalBytes);
    await new Promise((r) => setTimeout(r, 2));
  }
  await writes;
  assert.equal(done, true);
  s.dispose();
});
