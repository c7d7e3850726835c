import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { access, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { GitCheckout, type CheckoutRequest } from "../agent/git-checkout.js";
import { PdciError } from "../protocol/errors.js";
import { gitOutput, makeGitFixture } from "./helpers/git-fixture.js";

async function setup(t: TestContext) {
  const fixture = await makeGitFixture(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), "pdci-checkout-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cacheDir = path.join(dir, "cache");
  const git = new GitCheckout({ cacheDir, blockTimeoutMs: 60_000 });
  let n = 0;
  const request = (over: Partial<CheckoutRequest>) => {
    n += 1;
    const lines: string[] = [];
    const req: CheckoutRequest = {
      jobId: `job-${n}`,
      repositoryUri: fixture.origin,
      ref: "refs/tags/phabricator/diff/1",
      commit: "",
      workspace: path.join(dir, `ws${n}`),
      log: (text) => lines.push(text),
      ...over,
    };
    return { req, lines };
  };
  return { fixture, cacheDir, git, request };
}

function mirrorOf(cacheDir: string, mirrors: string[]): string {
  assert.equal(mirrors.length, 1, "one cache directory per repository");
  return path.join(cacheDir, mirrors[0] ?? "");
}

/** The number of objects the server sent, from git's "remote: Total N" line. */
function objectsSent(lines: string[]): number {
  const line = lines.find((text) => /remote: Total \d+/.test(text));
  assert.ok(line, `no object count in:\n${lines.join("\n")}`);
  return Number(/Total (\d+)/.exec(line)?.[1]);
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PdciError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

test("checks out a staging tag into a workspace and cleans the job ref", async (t) => {
  const { fixture, cacheDir, git, request } = await setup(t);
  const { req, lines } = request({});
  const result = await git.checkout(req);
  assert.equal(result.commit, fixture.diff1);
  assert.equal(gitOutput(req.workspace, "rev-parse", "HEAD"), fixture.diff1);
  assert.equal(await readFile(path.join(req.workspace, "file0.txt"), "utf8"), "content 0\n");
  assert.ok(lines.some((line) => line.startsWith("$ git fetch --no-tags --force")));
  assert.ok(lines.some((line) => line.includes("phabricator/diff/1 -> refs/pdci/job/job-1")));
  const mirror = mirrorOf(cacheDir, await readdir(cacheDir));
  const refs = gitOutput(mirror, "for-each-ref", "--format=%(refname)");
  assert.equal(refs, `refs/pdci/keep/${fixture.diff1}`, "only the kept tip remains");
});

test("a second job of the same repository reuses the mirror and fetches only new objects", async (t) => {
  const { fixture, cacheDir, git, request } = await setup(t);
  const first = request({});
  await git.checkout(first.req);
  const second = request({ ref: "refs/tags/phabricator/diff/2" });
  assert.equal((await git.checkout(second.req)).commit, fixture.diff2);
  mirrorOf(cacheDir, await readdir(cacheDir));
  assert.ok(second.lines.some((line) => line.startsWith("using the repository cache")));
  const full = objectsSent(first.lines);
  const incremental = objectsSent(second.lines);
  assert.ok(incremental < full / 4, `second fetch sent ${incremental} objects, the first ${full}`);
  assert.equal(await readFile(path.join(second.req.workspace, "file0.txt"), "utf8"), "changed in diff 2\n");
});

test("concurrent jobs of one repository all succeed", async (t) => {
  const { fixture, git, request } = await setup(t);
  const refs = ["1", "2", "1", "2"].map((n) => request({ ref: `refs/tags/phabricator/diff/${n}` }));
  const results = await Promise.all(refs.map(({ req }) => git.checkout(req)));
  assert.deepEqual(
    results.map((r) => r.commit),
    [fixture.diff1, fixture.diff2, fixture.diff1, fixture.diff2],
  );
});

test("a missing ref fails with git's message", async (t) => {
  const { git, request } = await setup(t);
  const { req } = request({ ref: "refs/tags/phabricator/diff/99" });
  await rejectsWith(
    git.checkout(req),
    "git_failed",
    /couldn't find remote ref refs\/tags\/phabricator\/diff\/99/,
  );
});

test("an unreachable repository fails with git_failed", async (t) => {
  const { fixture, git, request } = await setup(t);
  const { req } = request({ repositoryUri: path.join(fixture.root, "missing.git") });
  await rejectsWith(git.checkout(req), "git_failed", /does not appear to be a git repository|not found/i);
});

test("option-like input is refused before git runs", async (t) => {
  const { cacheDir, git, request } = await setup(t);
  for (const over of [
    { repositoryUri: "--upload-pack=x" },
    { ref: "--upload-pack=x" },
    { ref: "", commit: "" },
  ]) {
    const { req, lines } = request(over);
    await rejectsWith(git.checkout(req), "bad_input");
    assert.deepEqual(lines, []);
  }
  await assert.rejects(access(cacheDir), "nothing was created");
});

test("a ref that does not point to the expected commit is refused", async (t) => {
  const { fixture, git, request } = await setup(t);
  const { req } = request({ commit: fixture.diff2 });
  await rejectsWith(git.checkout(req), "git_failed", /not to the expected/);
});

test("checks out a commit given only by its hash, full or abbreviated", async (t) => {
  const { fixture, git, request } = await setup(t);
  const full = request({ ref: "", commit: fixture.branchCommit });
  assert.equal((await git.checkout(full.req)).commit, fixture.branchCommit);
  assert.equal(await readFile(path.join(full.req.workspace, "feature.txt"), "utf8"), "only on a branch\n");
  const short = request({ ref: "", commit: fixture.diff2.slice(0, 10) });
  assert.equal((await git.checkout(short.req)).commit, fixture.diff2);
  assert.ok(short.lines.some((line) => line.includes("refs/heads/*")));
  const unknown = request({ ref: "", commit: "0123456789abcdef0123456789abcdef01234567" });
  await rejectsWith(git.checkout(unknown.req), "git_failed", /is on no branch/);
});

test("archive streams the tree of the commit without .git", async (t) => {
  const { git, request } = await setup(t);
  const { req } = request({});
  const { commit } = await git.checkout(req);
  const tar = spawn("tar", ["-t"], { stdio: ["pipe", "pipe", "inherit"] });
  git.archive(req.workspace, commit).pipe(tar.stdin);
  let listing = "";
  tar.stdout.on("data", (chunk: Buffer) => (listing += chunk.toString()));
  const code = await new Promise((resolve) => tar.on("close", resolve));
  assert.equal(code, 0);
  const names = listing.split("\n").filter((name) => name !== "");
  assert.ok(names.includes("Dockerfile") && names.includes("file29.txt"), listing);
  assert.ok(!names.some((name) => name.startsWith(".git")), listing);
});

test("archive of an unknown commit errors the stream", async (t) => {
  const { git, request } = await setup(t);
  const { req } = request({});
  await git.checkout(req);
  const stream = git.archive(req.workspace, "0123456789abcdef0123456789abcdef01234567");
  stream.resume();
  const err = await new Promise((resolve) => stream.on("error", resolve));
  assert.ok(err instanceof PdciError && err.code === "git_failed", String(err));
  assert.throws(() => git.archive(req.workspace, "--output=x"), PdciError);
});
