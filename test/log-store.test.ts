import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { INLINE_LOG_MAX_BYTES, LogStore } from "../coordinator/log-store.js";
import { SqliteJobStore } from "../coordinator/sqlite-job-store.js";
import { tempDir } from "./helpers/stack.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function open(dir: string): { store: SqliteJobStore; logs: LogStore } {
  const store = new SqliteJobStore(join(dir, "db.sqlite"));
  return { store, logs: new LogStore(join(dir, "logs"), 1 << 30, store) };
}

function opened(t: TestContext, dir: string): { store: SqliteJobStore; logs: LogStore } {
  const s = open(dir);
  t.after(() => {
    s.logs.closeAll();
    s.store.close();
  });
  return s;
}

async function readAll(logs: LogStore, id: number, offset = 0): Promise<Buffer> {
  const stream = logs.read(id, offset, 1 << 30);
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test("a small log lives in the database: no file, acknowledged once the WAL is synced", async (t) => {
  const dir = tempDir(t, "pdci-logs-");
  const { logs } = opened(t, dir);
  const a = Buffer.from("hello "),
    b = Buffer.from("world\n");
  assert.deepEqual(logs.append(1, 0, a), { kind: "ok", length: 6 });
  // A resend overlapping what is stored keeps only its new part; one past the end is a gap.
  assert.deepEqual(logs.append(1, 3, Buffer.from("lo world\n")), { kind: "ok", length: 12 });
  assert.deepEqual(logs.append(1, 20, b), { kind: "gap", length: 12 });
  assert.equal(logs.length(1), 12);
  assert.equal(logs.durableLength(1), 0, "nothing acknowledged before the sync");
  await logs.flush([1]);
  assert.equal(logs.durableLength(1), 12);
  assert.equal(existsSync(logs.path(1)), false);
  const all = Buffer.concat([a, b]);
  assert.deepEqual(await readAll(logs, 1), all);
  assert.deepEqual(await readAll(logs, 1, 6), b);
  assert.equal(await logs.sha256(1), sha(all));
  logs.close(1);
  assert.equal(logs.length(1), 12);
  assert.equal(await logs.sha256(1), sha(all));
  assert.deepEqual(await readAll(logs, 1), all);
  assert.equal(logs.read(1, 12, 100), null);
});

test("a log that outgrows the database moves to its file, synced, and carries on there", async (t) => {
  const dir = tempDir(t, "pdci-logs-");
  const { store, logs } = opened(t, dir);
  const first = Buffer.alloc(INLINE_LOG_MAX_BYTES - 10, "a");
  const second = Buffer.alloc(100, "b");
  const third = Buffer.from("tail\n");
  logs.append(2, 0, first);
  assert.equal(existsSync(logs.path(2)), false);
  logs.append(2, first.length, second);
  assert.ok(existsSync(logs.path(2)));
  assert.deepEqual(store.inlineChunks(2), [], "rows deleted once the file holds them");
  assert.equal(logs.durableLength(2), first.length + second.length, "the move synced the file");
  logs.append(2, first.length + second.length, third);
  await logs.flush();
  const all = Buffer.concat([first, second, third]);
  assert.deepEqual(readFileSync(logs.path(2)), all);
  assert.equal(await logs.sha256(2), sha(all));
  assert.deepEqual(await readAll(logs, 2), all);
});

test("after a restart both kinds of log are found again and appends continue at their end", async (t) => {
  const dir = tempDir(t, "pdci-logs-");
  const small = Buffer.from("small log\n");
  const big = Buffer.alloc(INLINE_LOG_MAX_BYTES + 1, "x");
  {
    const { store, logs } = open(dir);
    logs.append(3, 0, small);
    logs.append(4, 0, big);
    // Gone without closing the logs (as after kill -9): only the store's commit happened.
    store.close();
  }
  const { logs } = opened(t, dir);
  assert.equal(logs.length(3), small.length);
  assert.equal(logs.length(4), big.length);
  assert.deepEqual(logs.append(3, small.length, Buffer.from("more\n")), { kind: "ok", length: 15 });
  assert.deepEqual(logs.append(4, 0, Buffer.from("x")), { kind: "ok", length: big.length });
  await logs.flush();
  assert.equal(logs.durableLength(3), 15);
  assert.equal(await logs.sha256(3), sha(Buffer.concat([small, Buffer.from("more\n")])));
  assert.equal(await logs.sha256(4), sha(big));
});

test("a move to a file cut short by a crash: the rows are the log, the stale file goes", async (t) => {
  const dir = tempDir(t, "pdci-logs-");
  const text = Buffer.from("what the agent was acknowledged\n");
  {
    const { store, logs } = open(dir);
    logs.append(5, 0, text);
    store.close();
    writeFileSync(logs.path(5), "half of a mov");
  }
  const { logs } = opened(t, dir);
  assert.equal(logs.length(5), text.length);
  assert.deepEqual(await readAll(logs, 5), text);
  logs.append(5, text.length, Buffer.from("+"));
  assert.equal(existsSync(logs.path(5)), false);
  assert.equal(await logs.sha256(5), sha(Buffer.concat([text, Buffer.from("+")])));
});

test("an archived attempt keeps its bytes in a file and the retry starts from zero", async (t) => {
  const dir = tempDir(t, "pdci-logs-");
  const { store, logs } = opened(t, dir);
  logs.append(6, 0, Buffer.from("attempt one\n"));
  logs.syncNow(6);
  assert.equal(logs.durableLength(6), 12);
  logs.archive(6, 0);
  assert.equal(readFileSync(join(dir, "logs", "6.attempt-0.log"), "utf8"), "attempt one\n");
  assert.deepEqual(store.inlineChunks(6), []);
  assert.equal(logs.length(6), 0);
  assert.deepEqual(logs.append(6, 0, Buffer.from("two\n")), { kind: "ok", length: 4 });
});
