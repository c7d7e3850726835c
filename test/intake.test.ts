import assert from "node:assert/strict";
import { test } from "node:test";
import { parseChangeHook, parseHarbormasterHook } from "../coordinator/intake.js";
import { coordinatorTestConfig, getJson, startTestCoordinator, tempDir, webhook } from "./helpers/stack.js";

const q = (s: string) => new URLSearchParams(s);

test("a Harbormaster diff hook becomes a job for the staging tag", () => {
  // The query Harbormaster sent in a recorded exchange (values percent-encoded except '/').
  const r = parseHarbormasterHook(
    q(
      "target=PHID-HMBT-4cfez4w6mxiog7c5vvmo&build=2&diff=2&revision=1&commit=&staging=http%3A//127.0.0.1%3A8085/source/demo-staging.git&ref=refs/tags/phabricator/diff/2",
    ),
    [],
  );
  assert.ok(r.ok);
  assert.equal(r.job.repositoryUri, "http://127.0.0.1:8085/source/demo-staging.git");
  assert.equal(r.job.ref, "refs/tags/phabricator/diff/2");
  assert.equal(r.job.commit, "");
  assert.deepEqual(r.job.meta, { diff: "2", revision: "1", build: "2" });
});

test("a commit hook builds repository + commit", () => {
  const r = parseHarbormasterHook(
    q("target=PHID-HMBT-abc&repository=ssh://git@host/x.git&commit=0123456789abcdef"),
    [],
  );
  assert.ok(r.ok);
  assert.equal(r.job.ref, "");
  assert.equal(r.job.commit, "0123456789abcdef");
});

test("the Buildbot-era change_hook maps revision to the staging tag", () => {
  const r = parseChangeHook(
    q("project=p&repository=https://h/s.git&revision=17&PHID=PHID-HMBT-x1&author=a&comments=c"),
    [],
  );
  assert.ok(r.ok);
  assert.equal(r.job.ref, "refs/tags/phabricator/diff/17");
  assert.equal(r.job.targetPhid, "PHID-HMBT-x1");
});

const refused: Array<[string, string, RegExp]> = [
  [
    "injected ref",
    "target=PHID-HMBT-a&staging=/srv/s.git&ref=--upload-pack=touch%20/tmp/pwned",
    /ref: must start with 'refs\/'/,
  ],
  ["ref option inside", "target=PHID-HMBT-a&staging=/srv/s.git&ref=refs/tags/-x", /component starting/],
  [
    "option as uri",
    "target=PHID-HMBT-a&staging=--upload-pack=x&ref=refs/tags/a",
    /staging: must not start with '-'/,
  ],
  ["ext transport", "target=PHID-HMBT-a&staging=ext::sh%20-c%20x&ref=refs/tags/a", /staging:/],
  ["file scheme", "target=PHID-HMBT-a&staging=file:///etc&ref=refs/tags/a", /scheme 'file'/],
  ["relative path", "target=PHID-HMBT-a&staging=../x&ref=refs/tags/a", /staging:/],
  ["bad target", "target=PHID-USER-a&staging=/s.git&ref=refs/tags/a", /target:/],
  ["nothing to build", "target=PHID-HMBT-a", /staging and ref/],
  ["bad commit", "target=PHID-HMBT-a&repository=/s.git&commit=HEAD;rm", /commit:/],
  ["bad label", "target=PHID-HMBT-a&staging=/s.git&ref=refs/tags/a&labels=ok,%20-bad", /labels:/],
];

for (const [name, query, problem] of refused) {
  test(`intake refuses ${name}`, () => {
    const r = parseHarbormasterHook(q(query), []);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.problems.join("\n"), problem);
  });
}

test("the allow-list restricts repositories by prefix", () => {
  const allow = ["https://phab.example.com/source/"];
  assert.ok(
    parseHarbormasterHook(
      q("target=PHID-HMBT-a&staging=https://phab.example.com/source/x.git&ref=refs/tags/a"),
      allow,
    ).ok,
  );
  const r = parseHarbormasterHook(
    q("target=PHID-HMBT-a&staging=https://evil.example.com/x.git&ref=refs/tags/a"),
    allow,
  );
  assert.equal(r.ok, false);
});

test("webhook HTTP: 202, duplicate 200, 400 listing problems, 401, methods", async (t) => {
  const c = await startTestCoordinator(
    t,
    coordinatorTestConfig(tempDir(t, "pdci-coord-"), {
      webhookUser: "ci-user",
      webhookPassword: "s3cret-p@ss",
    }),
  );
  const auth = "ci-user:s3cret-p@ss";
  const hook = "/harbormaster?target=PHID-HMBT-dup1&staging=/srv/s.git&ref=refs/tags/phabricator/diff/1";

  const first = await webhook(c.url, hook, { auth });
  assert.equal(first.status, 202);
  const again = await webhook(c.url, hook, { auth, method: "PUT" });
  assert.equal(again.status, 200);
  assert.equal(again.body["jobId"], first.body["jobId"]);
  assert.equal(again.body["duplicate"], true);

  assert.equal((await webhook(c.url, hook, { auth: "ci-user:wrong" })).status, 401);
  assert.equal((await webhook(c.url, hook)).status, 401);
  assert.equal((await webhook(c.url, hook, { auth, method: "DELETE" })).status, 405);

  const bad = await webhook(c.url, "/harbormaster?target=nope&staging=--upload-pack=x&ref=..", {
    auth,
    method: "GET",
  });
  assert.equal(bad.status, 400);
  assert.equal((bad.body["problems"] as string[]).length, 3);

  const jobs = (await getJson(`${c.url}/api/jobs`))["jobs"] as unknown[];
  assert.equal(jobs.length, 1, "refused hooks create no job");
});

test("a burst of identical webhooks makes one job", async (t) => {
  const c = await startTestCoordinator(t, coordinatorTestConfig(tempDir(t, "pdci-coord-")));
  const hook = "/harbormaster?target=PHID-HMBT-burst&staging=/srv/s.git&ref=refs/tags/phabricator/diff/1";
  const answers = await Promise.all(Array.from({ length: 200 }, () => webhook(c.url, hook)));
  assert.equal(answers.filter((a) => a.status === 202).length, 1);
  assert.equal(answers.filter((a) => a.status === 200).length, 199);
  assert.equal(new Set(answers.map((a) => a.body["jobId"])).size, 1);
});
