import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], {
    cwd,
    stdio: "pipe",
  });

/** One staged diff: the files of its tree. */
export type Diff = Record<string, string>;

/**
 * A bare staging repository as Phabricator keeps one: each diff is a commit tagged
 * `phabricator/diff/<n>`. Removed after the test.
 */
export function makeStagingRepo(t: TestContext, diffs: Record<number, Diff>): string {
  const root = mkdtempSync(join(tmpdir(), "pdci-staging-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const work = join(root, "work");
  const bare = join(root, "staging.git");
  git(root, "init", "--quiet", "--bare", bare);
  git(root, "init", "--quiet", work);
  for (const [n, files] of Object.entries(diffs)) {
    git(work, "rm", "-r", "--quiet", "--ignore-unmatch", ".");
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(join(work, name, ".."), { recursive: true });
      writeFileSync(join(work, name), content);
    }
    git(work, "add", "--all");
    git(work, "commit", "--quiet", "--allow-empty", "-m", `diff ${n}`);
    git(work, "tag", `phabricator/diff/${n}`);
  }
  git(work, "push", "--quiet", bare, "--tags");
  return bare;
}

/** A diff whose image runs `script` with busybox sh. */
export function shellDiff(base: string, script: string): Diff {
  return {
    Dockerfile: `FROM ${base}\nCOPY run.sh /run.sh\nCMD ["sh", "/run.sh"]\n`,
    "run.sh": script,
  };
}
