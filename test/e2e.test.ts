import assert from "node:assert/strict";
import { test } from "node:test";
import { ensureBaseImage, requireDocker } from "./helpers/docker-images.js";
import { makeStagingRepo, shellDiff } from "./helpers/staging-repo.js";
import {
  conduitConfig,
  coordinatorTestConfig,
  getJson,
  getText,
  startFakeConduit,
  startTestAgent,
  startTestCoordinator,
  tempDir,
  uniqueName,
  waitFor,
  webhook,
  wsUrl,
} from "./helpers/stack.js";

/** Harbormaster percent-encodes variables except '/'. */
const enc = (v: string) => encodeURIComponent(v).replace(/%2F/g, "/");

test("webhook to Conduit pass/fail through a real agent, git and Docker", async (t) => {
  await requireDocker();
  const base = await ensureBaseImage();
  const staging = makeStagingRepo(t, {
    1: shellDiff(base, 'echo "MARKER-diff-1-$((6*7))"\n'),
    2: shellDiff(base, 'echo "about to fail" >&2\nexit 1\n'),
    3: { Dockerfile: `FROM ${base}\nRUN echo building && exit 7\n` },
  });
  const conduit = await startFakeConduit(t);
  const coordinator = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), { conduit: conduitConfig(conduit) }),
  );
  const agentName = uniqueName("e2e");
  await startTestAgent(t, wsUrl(coordinator.url), { name: agentName });

  const targets = ["PHID-HMBT-eone", "PHID-HMBT-etwo", "PHID-HMBT-ethree", "PHID-HMBT-efour"];
  for (const phid of targets) conduit.addTarget({ phid });
  const hooks = [
    `/harbormaster?target=${targets[0]}&staging=${enc(staging)}&ref=refs/tags/phabricator/diff/1&diff=1&revision=1&commit=`,
    `/change_hook?project=demo&repository=${enc(staging)}&revision=2&PHID=${targets[1]}&author=alice&comments=x`,
    `/change_hook/base?project=demo&repository=${enc(staging)}&revision=3&PHID=${targets[2]}`,
    `/harbormaster?target=${targets[3]}&staging=${enc(staging)}&ref=refs/tags/phabricator/diff/4`,
  ];
  const jobIds: number[] = [];
  for (const hook of hooks) {
    const res = await webhook(coordinator.url, hook);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.match(String(res.body["url"]), /^http:\/\/ci\.example\.test\/jobs\/\d+$/);
    jobIds.push(Number(res.body["jobId"]));
  }

  await waitFor("four final messages", () => targets.every((p) => conduit.messages(p).length === 1), 120_000);
  const finals = targets.map((p) => conduit.messages(p).map((m) => m.type));
  assert.deepEqual(finals, [["pass"], ["fail"], ["fail"], ["fail"]]);
  for (const [i, phid] of targets.entries()) {
    const artifacts = conduit.artifacts(phid);
    assert.equal(artifacts.length, 1, `one artifact for ${phid}`);
    assert.equal(artifacts[0]?.artifactData["uri"], `http://ci.example.test/jobs/${jobIds[i]}`);
    assert.equal(artifacts[0]?.artifactData["ui.external"], true);
  }

  const logs = await Promise.all(jobIds.map((id) => getText(`${coordinator.url}/api/jobs/${id}/log`)));
  assert.match(logs[0] ?? "", /MARKER-diff-1-42/);
  assert.match(logs[1] ?? "", /about to fail/);
  assert.match(logs[2] ?? "", /exit 7|returned a non-zero code: 7/);
  assert.match(logs[3] ?? "", /phabricator\/diff\/4/);
  assert.match(logs[3] ?? "", /git_failed/);

  const jobs = await Promise.all(jobIds.map((id) => getJson(`${coordinator.url}/api/jobs/${id}`)));
  assert.deepEqual(
    jobs.map((j) => [j["state"], j["result"]]),
    [
      ["finished", "pass"],
      ["finished", "fail"],
      ["finished", "fail"],
      ["finished", "fail"],
    ],
  );
  assert.match(String(jobs[1]?.["reason"]), /exit code 1/);
  assert.match(String(jobs[2]?.["reason"]), /build failed/);
  assert.match(String(jobs[3]?.["reason"]), /checkout failed/);

  const agents = await getJson(`${coordinator.url}/api/agents`);
  assert.deepEqual(
    (agents["agents"] as Array<Record<string, unknown>>).map((a) => [a["name"], a["connected"]]),
    [[agentName, true]],
  );
  const page = await getText(`${coordinator.url}/jobs/${jobIds[0]}`);
  assert.match(page, /MARKER-diff-1-42/);
});
