import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { WebSocketServer } from "ws";
import { IDLE_PING_EVERY } from "../agent/agent.js";
import { LABEL_AGENT, LABEL_JOB } from "../agent/job-runner.js";
import { PROTOCOL_VERSION } from "../protocol/messages.js";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  assertResults,
  conduitConfig,
  coordinatorTestConfig,
  startFakeConduit,
  startTestAgent,
  startTestCoordinator,
  TEST_TIMING,
  tempDir,
  uniqueName,
  waitFor,
  waitForJob,
  waitForJobWhere,
  webhook,
  wsUrl,
} from "./helpers/stack.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";

const ROUNDS = 40;
const PER_ROUND = 5000;

/** What the container prints: ROUNDS batches of PER_ROUND numbers, a little apart in time. */
const SCRIPT = `i=0
while [ $i -lt ${ROUNDS} ]; do
  seq $((i*${PER_ROUND})) $((i*${PER_ROUND}+${PER_ROUND - 1}))
  i=$((i+1))
  sleep 0.05
done
`;

function expectedOutput(): Buffer {
  const lines: string[] = [];
  for (let n = 0; n < ROUNDS * PER_ROUND; n++) lines.push(String(n));
  return Buffer.from(`${lines.join("\n")}\n`);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

for (const side of ["server", "agent"] as const) {
  test(`connection cut from the ${side} side mid-job and restored: the job finishes once with a complete log`, async (t) => {
    await requireDocker();
    const base = await ensureBaseImage();
    const staging = makeStagingRepo(t, { 1: shellDiff(base, SCRIPT) });
    const conduit = await startFakeConduit(t);
    const c = await startTestCoordinator(
      t,
      coordinatorTestConfig(tempDir(t, "pdci-coord-"), { conduit: conduitConfig(conduit) }),
    );
    const proxy = await TcpProxy.start(c.port);
    t.after(() => proxy.close());
    // A small memory limit makes the bytes written during the cut spill to disk.
    const agent = await startTestAgent(t, `ws://127.0.0.1:${proxy.port}/agent`, {
      logMemoryBytes: 64 * 1024,
    });
    await waitFor("agent connected", () => agent.connected);

    const target = `PHID-HMBT-resume${side}`;
    conduit.addTarget({ phid: target });
    const res = await webhook(
      c.url,
      `/harbormaster?target=${target}&staging=${staging}&ref=refs/tags/phabricator/diff/1`,
    );
    const id = Number(res.body["jobId"]);

    // Cut once the container is streaming, keep it cut while it writes more, then restore.
    await waitForJobWhere(
      c.url,
      id,
      "100 kB streamed before the cut",
      (j) => Number(j["logBytes"]) >= 100_000,
    );
    proxy.cut(side);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(agent.connected, false);
    proxy.restore();

    const job = await waitForJob(c.url, id);
    await waitFor("final message", () => conduit.messages(target).length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      conduit.messages(target).map((m) => m.type),
      ["pass"],
    );
    await assertResults(c.url, [job], ["pass"]);
    assert.equal(job["attempt"], 0, "the job was resumed, not run again");

    const log = Buffer.from(await (await fetch(`${c.url}/api/jobs/${id}/log`)).arrayBuffer());
    assert.equal(log.length, job["logBytes"]);
    assert.equal(sha(log), job["logSha256"], "stored log matches what the agent hashed");
    const start = log.indexOf("running the image's default command\n");
    const end = log.indexOf("\n--- phab-dock-ci: exit code");
    const output = log.subarray(start + "running the image's default command\n".length, end);
    const expected = expectedOutput();
    assert.equal(output.length, expected.length, "byte count of the container's output");
    assert.equal(sha(output), sha(expected), "SHA-256 of the container's output");
  });
}

test("cut off longer than the lease: the job runs elsewhere and the old agent stops its copy", async (t) => {
  const docker = await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, { 1: shellDiff(base, "echo begin\nsleep 4\necho end\n") });
  const conduit = await startFakeConduit(t);
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), { conduit: conduitConfig(conduit) }),
  );
  const proxy = await TcpProxy.start(c.port);
  t.after(() => proxy.close());
  const far = uniqueName("far");
  const nearName = uniqueName("near");
  const cutOff = await startTestAgent(t, `ws://127.0.0.1:${proxy.port}/agent`, { name: far });
  await waitFor("far agent connected", () => cutOff.connected);
  conduit.addTarget({ phid: "PHID-HMBT-fenced" });
  const res = await webhook(
    c.url,
    `/harbormaster?target=PHID-HMBT-fenced&staging=${staging}&ref=refs/tags/phabricator/diff/1`,
  );
  const id = Number(res.body["jobId"]);
  await waitForJobWhere(
    c.url,
    id,
    "container output",
    (j) => j["phase"] === "running" && Number(j["logBytes"]) > 0,
  );
  const near = await startTestAgent(t, wsUrl(c.url), { name: nearName });
  await waitFor("near agent connected", () => near.connected);
  proxy.cut();

  const running = async (agentName: string) =>
    (
      await docker.listContainers({
        filters: { label: [`${LABEL_JOB}=${id}`, `${LABEL_AGENT}=${agentName}`], status: ["running"] },
      })
    ).length;
  // From the moment the near agent starts the job, the far one must no longer run it.
  await waitFor("job started on the near agent", () => near.runningJobs > 0, 20_000);
  assert.equal(await running(far), 0, "the cut-off agent stopped its copy before the lease ran out");

  proxy.restore();
  const job = await waitForJob(c.url, id, 60_000);
  await assertResults(c.url, [job], ["pass"]);
  assert.equal(job["agent"], nearName);
  await new Promise((r) => setTimeout(r, 1_000));
  assert.deepEqual(
    conduit.messages("PHID-HMBT-fenced").map((m) => m.type),
    ["work", "pass"],
  );
});

test("an idle agent whose connection goes silent notices by its pings and connects again", async (t) => {
  // A long lease: the coordinator does not drop the silent connection itself during the test.
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), { timing: { ...TEST_TIMING, leaseMs: 120_000 } }),
  );
  const proxy = await TcpProxy.start(c.port);
  t.after(() => proxy.close());
  const agent = await startTestAgent(t, `ws://127.0.0.1:${proxy.port}/agent`);
  await waitFor("agent connected", () => agent.connected);
  assert.equal(proxy.accepted, 1);
  proxy.freeze();
  // Idle, it pings every few heartbeats (200 ms here) and gives up after a few missed pongs.
  await waitFor("a new connection", () => proxy.accepted >= 2 && agent.connected, 15_000);
});

test("an idle agent beats every idleHeartbeatEvery intervals and pings every IDLE_PING_EVERY", async (t) => {
  // A coordinator reduced to a WebSocket server that welcomes and counts: only the agent is tested.
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  t.after(async () => {
    for (const ws of server.clients) ws.terminate();
    await new Promise((r) => server.close(r));
  });
  await new Promise((r) => server.once("listening", r));
  let heartbeats = 0;
  let pings = 0;
  server.on("connection", (ws) => {
    ws.on("ping", () => (pings += 1));
    ws.on("message", (data) => {
      const msg = JSON.parse(String(data)) as Record<string, unknown>;
      if (msg["type"] === "heartbeat") heartbeats += 1;
      if (msg["type"] !== "hello") return;
      ws.send(
        JSON.stringify({
          type: "welcome",
          protocolVersion: PROTOCOL_VERSION,
          heartbeatIntervalMs: 50,
          idleHeartbeatEvery: 4,
          leaseMs: 1_000,
          offerTimeoutMs: 1_000,
          logFlushIntervalMs: 20,
          maxChunkBytes: 65_536,
          maxLogBytes: 1 << 20,
          resumed: [],
          cancel: [],
        }),
      );
    });
  });
  const { port } = server.address() as AddressInfo;
  const agent = await startTestAgent(t, `ws://127.0.0.1:${port}/agent`);
  await waitFor("agent connected", () => agent.connected);
  await new Promise((r) => setTimeout(r, 2_400));
  // 48 intervals in 2.4 s: 12 heartbeats and 8 pings, give or take timer drift.
  assert.ok(heartbeats >= 8 && heartbeats <= 13, `${heartbeats} heartbeats`);
  assert.ok(pings >= 5 && pings <= 9, `${pings} pings (IDLE_PING_EVERY ${IDLE_PING_EVERY})`);
  assert.equal(agent.connected, true, "the pongs kept the connection");
});
