import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocket } from "ws";
import { PROTOCOL_VERSION } from "../protocol/messages.js";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  AGENT_TOKEN,
  TEST_TIMING,
  assertResults,
  coordinatorTestConfig,
  startTestAgent,
  startTestCoordinator,
  tempDir,
  waitFor,
  waitForJob,
  webhook,
  wsUrl,
} from "./helpers/stack.js";

interface Probe {
  ws: WebSocket;
  frames: Array<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A raw WebSocket peer that sends whatever the test wants, to probe the coordinator's defences. */
async function probe(url: string, token = AGENT_TOKEN): Promise<Probe> {
  const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
  const frames: Array<Record<string, unknown>> = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, frames, closed };
}

const hello = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    type: "hello",
    protocolVersion: PROTOCOL_VERSION,
    name: "probe",
    labels: [],
    capacity: 1,
    agentVersion: "t",
    running: [],
    ...over,
  });

test("a wrong agent token is refused at the upgrade", async (t) => {
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-")));
  await assert.rejects(probe(wsUrl(c.url), "wrong-token-wrong-token"), /401/);
});

test("a wrong protocol version gets an error naming both versions, then close 1008", async (t) => {
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-")));
  const p = await probe(wsUrl(c.url));
  p.ws.send(hello({ protocolVersion: 99 }));
  const closed = await p.closed;
  assert.equal(closed.code, 1008);
  assert.equal(p.frames[0]?.["code"], "protocol_version");
  assert.match(
    String(p.frames[0]?.["message"]),
    new RegExp(`agent speaks 99, coordinator speaks ${PROTOCOL_VERSION}`),
  );
});

test("garbage frames get error frames, repeated garbage closes with 1008, other agents carry on", async (t) => {
  await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, { 1: shellDiff(base, "echo still-working\n") });
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-")));
  const good = await startTestAgent(t, wsUrl(c.url), { name: "good" });
  await waitFor("good agent connected", () => good.connected);

  const bad = await probe(wsUrl(c.url));
  bad.ws.send(hello({ name: "bad" }));
  await waitFor("welcome", () => bad.frames.some((f) => f["type"] === "welcome"));
  const junk = ["{", "[]", '{"type":"job.finished","jobId":"1"}', '{"type":"nope"}', Buffer.from([0, 1, 2])];
  for (const j of junk) bad.ws.send(j);
  const closed = await bad.closed;
  assert.equal(closed.code, 1008);
  const errors = bad.frames.filter((f) => f["type"] === "error");
  assert.equal(errors.length, 5);
  assert.deepEqual(
    errors.map((e) => e["code"]),
    ["bad_json", "bad_frame", "bad_message", "unknown_type", "bad_frame"],
  );

  // The well-behaved agent still gets and runs work.
  const res = await webhook(
    c.url,
    `/harbormaster?target=PHID-HMBT-good&staging=${staging}&ref=refs/tags/phabricator/diff/1`,
  );
  assert.equal(res.status, 202);
  const id = Number(res.body["jobId"]);
  const job = await waitForJob(c.url, id);
  await assertResults(c.url, [job], ["pass"]);
  assert.equal(job["agent"], "good");
});

test("an agent connecting under a name still connected replaces the old connection", async (t) => {
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-")));
  const first = await probe(wsUrl(c.url));
  first.ws.send(hello({ name: "same" }));
  await waitFor("first welcomed", () => first.frames.some((f) => f["type"] === "welcome"));
  const second = await probe(wsUrl(c.url));
  second.ws.send(hello({ name: "same" }));
  const closed = await first.closed;
  assert.equal(closed.code, 4000);
  await waitFor("second welcomed", () => second.frames.some((f) => f["type"] === "welcome"));
  second.ws.close();
});

test("a silent idle agent is dropped after idleHeartbeatEvery leases, not after one", async (t) => {
  const timing = { ...TEST_TIMING, heartbeatIntervalMs: 100, leaseMs: 400, idleHeartbeatEvery: 4 };
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-"), { timing }));
  const p = await probe(wsUrl(c.url));
  p.ws.send(hello({ name: "quiet" }));
  await waitFor("welcome", () => p.frames.some((f) => f["type"] === "welcome"));
  const welcome = p.frames.find((f) => f["type"] === "welcome");
  assert.equal(welcome?.["idleHeartbeatEvery"], 4);
  const t0 = Date.now();
  const closed = await p.closed;
  const silentMs = Date.now() - t0;
  // Idle: 4 leases (1.6 s) of silence, checked once per heartbeat interval.
  assert.ok(silentMs >= 1_500, `dropped after ${silentMs} ms, before four leases of silence`);
  assert.ok(silentMs < 5_000, `dropped only after ${silentMs} ms`);
  assert.equal(closed.code, 1006);
});
