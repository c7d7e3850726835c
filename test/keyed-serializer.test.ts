import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { KeyedSerializer } from "../agent/keyed-serializer.js";

test("tasks of one key run one at a time, in order, whatever their outcome", async () => {
  const serializer = new KeyedSerializer();
  const events: string[] = [];
  const task =
    (name: string, fail = false) =>
    async () => {
      events.push(`start ${name}`);
      await sleep(10);
      events.push(`end ${name}`);
      if (fail) throw new Error(name);
      return name;
    };
  const results = await Promise.allSettled([
    serializer.run("a", task("1")),
    serializer.run("a", task("2", true)),
    serializer.run("a", task("3")),
  ]);
  assert.deepEqual(events, ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
  assert.deepEqual(
    results.map((r) => r.status),
    ["fulfilled", "rejected", "fulfilled"],
  );
  assert.equal(serializer.activeKeys, 0, "nothing is kept once the queue is empty");
});

test("tasks of different keys run concurrently", async () => {
  const serializer = new KeyedSerializer();
  let running = 0;
  let most = 0;
  const task = async () => {
    running += 1;
    most = Math.max(most, running);
    await sleep(20);
    running -= 1;
  };
  await Promise.all([serializer.run("a", task), serializer.run("b", task), serializer.run("c", task)]);
  assert.equal(most, 3);
});
