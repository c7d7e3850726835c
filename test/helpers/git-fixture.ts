/**
 * A throwaway origin repository shaped like a Phabricator staging area: a bare repository with the
 * tags `phabricator/diff/1` and `phabricator/diff/2`, plus a branch commit that no tag points to.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";

export interface GitFixture {
  /** Temp directory holding everything; removed after the test. */
  root: string;
  /** The bare repository to fetch from (an absolute path). */
  origin: string;
  diff1: string;
  diff2: string;
  /** A commit on the branch `feature`, reachable from no tag. */
  branchCommit: string;
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com" },
  }).trim();
}

async function commitAll(dir: string, message: string): Promise<string> {
  git(dir, "add", "--all");
  git(dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", message);
  return git(dir, "rev-parse", "HEAD");
}

export async function makeGitFixture(t: TestContext): Promise<GitFixture> {
  const root = await mkdtemp(path.join(os.tmpdir(), "pdci-git-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const work = path.join(root, "work");
  git(root, "init", "--quiet", "--initial-branch=main", work);
  // Enough files that a full fetch and an incremental one differ clearly in object count.
  for (let i = 0; i < 30; i++) await writeFile(path.join(work, `file${i}.txt`), `content ${i}\n`);
  const dockerfile =
    'FROM pdci-busybox:latest\nCOPY . /src\nCMD ["sh", "-c", "cat /src/file0.txt; ls -a /src"]\n';
  await writeFile(path.join(work, "Dockerfile"), dockerfile);
  const diff1 = await commitAll(work, "diff 1");
  git(work, "tag", "phabricator/diff/1");
  await writeFile(path.join(work, "file0.txt"), "changed in diff 2\n");
  const diff2 = await commitAll(work, "diff 2");
  git(work, "tag", "phabricator/diff/2");
  git(work, "checkout", "--quiet", "-b", "feature", diff1);
  await writeFile(path.join(work, "feature.txt"), "only on a branch\n");
  const branchCommit = await commitAll(work, "feature");
  const origin = path.join(root, "origin.git");
  git(root, "clone", "--quiet", "--bare", work, origin);
  return { root, origin, diff1, diff2, branchCommit };
}

/** Runs git in `cwd` for assertions. */
export function gitOutput(cwd: string, ...args: string[]): string {
  return git(cwd, ...args);
}
