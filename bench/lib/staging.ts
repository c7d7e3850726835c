/**
 * A bare repository shaped like a Phabricator staging area, written in one `git fast-import` run:
 * diff n is a commit with its own tree, tagged `phabricator/diff/<n>`.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export type Files = Record<string, string>;

export const diffRef = (n: number): string => `refs/tags/phabricator/diff/${n}`;

/** Creates `<dir>/staging.git` holding `diffs[n]` as diff n; returns its path. */
export function makeStaging(dir: string, diffs: Map<number, Files>): string {
  const bare = join(dir, "staging.git");
  execFileSync("git", ["init", "--quiet", "--bare", bare]);
  const parts: Buffer[] = [];
  const data = (text: string) => {
    const b = Buffer.from(text);
    parts.push(Buffer.from(`data ${b.length}\n`), b, Buffer.from("\n"));
  };
  let mark = 0;
  for (const [n, files] of diffs) {
    mark += 1;
    parts.push(Buffer.from(`commit refs/heads/main\nmark :${mark}\n`));
    parts.push(Buffer.from(`committer bench <bench@example.com> ${1_700_000_000 + n} +0000\n`));
    data(`diff ${n}`);
    parts.push(Buffer.from("deleteall\n"));
    for (const [name, content] of Object.entries(files)) {
      parts.push(Buffer.from(`M 100644 inline ${name}\n`));
      data(content);
    }
    parts.push(Buffer.from(`\nreset ${diffRef(n)}\nfrom :${mark}\n\n`));
  }
  execFileSync("git", ["fast-import", "--quiet"], { cwd: bare, input: Buffer.concat(parts) });
  return bare;
}

/** Makes the diffs of this process differ from those of earlier runs, whose layers may be cached. */
const RUN_NONCE = `${process.pid}-${Date.now()}`;

/** A diff whose image prints one line with its number (each diff builds a distinct layer). */
export function echoDiff(base: string, n: number): Files {
  return {
    Dockerfile: `FROM ${base}\nCOPY run.sh /run.sh\nCMD ["sh", "/run.sh"]\n`,
    "run.sh": `echo "bench diff ${n}" # ${RUN_NONCE}\n`,
  };
}
