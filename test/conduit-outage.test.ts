import assert from "node:assert/strict";
import { test } from "node:test";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  assertResults,
  coordinatorTestConfig,
  getJson,
  startFakeConduit,
  startTestAgent,
  startTestCoordinator,
  tempDir,
  waitFor,
  waitForJob,
  webhook,
  wsUrl,
} from "./helpers/stack.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";

test("Conduit answering 500, hanging, resetting, then refusing: every result arrives once, in order", async (t) => {
  await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, { 1: shellDiff(base, "echo ok\n"), 2: shellDiff(base, "exit 3\n") });
  const conduit = await startFakeConduit(t);
  const proxy = await TcpProxy.start(Number(new URL(conduit.url).port));
  t.after(() => proxy.close());
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), {
      conduit: {
        url: `http://127.0.0.1:${proxy.port}`,
        token: conduit.token,
        timeoutMs: 300,
        retryBaseMs: 50,
        retryCapMs: 400,
      },
      pollIntervalMs: 60_000,
    }),
  );
  const agent = await startTestAgent(t, wsUrl(c.url), { capacity: 2 });
  await waitFor("agent connected", () => agent.connected);

  // Phabricator unreachable from the start: artifacts and results have to wait in the outbox.
  await proxy.refuse();
  const targets = ["PHID-HMBT-outagea", "PHID-HMBT-outageb", "PHID-HMBT-outagec"];
  for (const p of targets) conduit.addTarget({ phid: p });
  const ids: number[] = [];
  for (const [i, p] of targets.entries()) {
    const res = await webhook(
      c.url,
      `/harbormaster?target=${p}&staging=${staging}&ref=refs/tags/phabricator/diff/${(i % 2) + 1}`,
    );
    ids.push(Number(res.body["jobId"]));
  }
  // Jobs run to the end while Phabricator is unwell.
  const jobs = await Promise.all(ids.map((id) => waitForJob(c.url, id)));
  await assertResults(c.url, jobs, ["pass", "fail", "pass"]);
  assert.equal(conduit.calls.length, 0, "nothing reached Conduit while it refused connections");
  // Then it comes back unwell: errors, hangs past the client timeout, resets; then healthy.
  conduit.failNext("500", 3);
  conduit.failNext("hang", 2);
  conduit.failNext("reset", 3);
  await proxy.accept();

  await waitFor(
    "all results delivered",
    () => targets.every((p) => conduit.messages(p).length === 1),
    30_000,
  );
  await new Promise((r) => setTimeout(r, 500));
  for (const [i, p] of targets.entries()) {
    assert.deepEqual(
      conduit.messages(p).map((m) => m.type),
      [i % 2 === 0 ? "pass" : "fail"],
      `exactly one final message for ${p}`,
    );
    assert.equal(conduit.artifacts(p).length, 1, `one artifact for ${p}`);
    // Per target, the artifact (queued at start) reached Conduit before the result.
    const order = conduit.calls
      .filter((call) => call.params["receiver"] === p || call.params["buildTargetPHID"] === p)
      .map((call) => call.method);
    assert.equal(order.at(-1), "harbormaster.sendmessage", `result last for ${p}: ${order.join(", ")}`);
  }
});

test("a refusal that can never succeed stops retrying and shows on the job", async (t) => {
  await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, { 1: shellDiff(base, "echo ok\n") });
  const conduit = await startFakeConduit(t);
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), {
      conduit: { url: conduit.url, token: conduit.token, timeoutMs: 500, retryBaseMs: 20, retryCapMs: 100 },
      pollIntervalMs: 60_000,
    }),
  );
  const agent = await startTestAgent(t, wsUrl(c.url));
  await waitFor("agent connected", () => agent.connected);
  // The fake does not know this target, as Phorge would not know a made-up one.
  const res = await webhook(
    c.url,
    `/harbormaster?target=PHID-HMBT-unknownx&staging=${staging}&ref=refs/tags/phabricator/diff/1`,
  );
  const id = Number(res.body["jobId"]);
  await waitForJob(c.url, id);
  await waitFor("reports given up", () => conduit.calls.length >= 2);
  await new Promise((r) => setTimeout(r, 600));
  const calls = conduit.calls.filter((call) => call.method !== "harbormaster.target.search").length;
  assert.equal(calls, 2, "one attempt each for the artifact and the result, no retries");
  const job = await getJson(`${c.url}/api/jobs/${id}`);
  const reports = job["reports"] as Array<Record<string, unknown>>;
  assert.deepEqual(
    reports.map((r) => r["state"]),
    ["dead", "dead"],
  );
  assert.match(String(reports[1]?.["lastError"]), /ERR-CONDUIT-CORE/);
  const page = await (await fetch(`${c.url}/jobs/${id}`)).text();
  assert.match(page, /ERR-CONDUIT-CORE/);
});
