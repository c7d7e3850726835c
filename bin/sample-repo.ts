import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const SAMPLE_DIFF = 1;

const git = (cwd: string, ...args: string[]) => execFileSync("git", args, { cwd, stdio: "pipe" });

/**
 * A small staging repository like the one Phabricator keeps: a bare repository with the tag
 * `phabricator/diff/1` whose Dockerfile builds from `baseImage` and prints a greeting.
 * Returns the bare repository's path; an existing one is reused.
 */
export function prepareSampleRepository(dataDir: string, baseImage: string): string {
  const bare = join(dataDir, "sample", "staging.git");
  if (existsSync(join(bare, "HEAD"))) return bare;
  mkdirSync(bare, { recursive: true });
  git(bare, "init", "--quiet", "--bare");
  const work = mkdtempSync(join(tmpdir(), "pdci-sample-"));
  try {
    git(work, "init", "--quiet");
    writeFileSync(
      join(work, "Dockerfile"),
      `FROM ${baseImage}\nCOPY hello.sh /hello.sh\nCMD ["sh", "/hello.sh"]\n`,
    );
    writeFileSync(join(work, "hello.sh"), 'echo "Hello from phab-dock-ci: the sample build passed."\n');
    git(work, "add", ".");
    git(
      work,
      "-c",
      "user.name=phab-dock-ci",
      "-c",
      "user.email=phab-dock-ci@localhost",
      "commit",
      "--quiet",
      "-m",
      "Sample change",
    );
    git(work, "tag", `phabricator/diff/${SAMPLE_DIFF}`);
    git(work, "push", "--quiet", bare, `refs/tags/phabricator/diff/${SAMPLE_DIFF}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return bare;
}
