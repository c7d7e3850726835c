import assert from "node:assert/strict";
import { test } from "node:test";
import { startCoordinator } from "../coordinator/coordinator.js";
import { silentLogger } from "../coordinator/logger.js";
import { coordinatorTestConfig, getJson, startTestCoordinator, tempDir } from "./helpers/stack.js";

test("a data directory belongs to one coordinator: a second one is refused, the first carries on", async (t) => {
  const dir = tempDir(t, "pdci-coord-");
  const first = await startTestCoordinator(t, coordinatorTestConfig(dir));
  await assert.rejects(
    startCoordinator(coordinatorTestConfig(dir), silentLogger),
    /in use by another coordinator/,
  );
  const health = await getJson(`${first.url}/healthz`);
  assert.equal(health["ok"], true);
  await first.close();
  // Released with the first: the next coordinator on it starts.
  const next = await startTestCoordinator(t, coordinatorTestConfig(dir));
  assert.equal((await getJson(`${next.url}/healthz`))["ok"], true);
});
