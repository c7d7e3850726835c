/**
 * Workspaces for jobs: each repository gets a bare mirror in the cache directory that every job of
 * that repository fetches into (so a later job downloads only what is new), and each job gets a
 * cheap clone of the mirror that shares its objects, checked out at the fetched commit.
 */
import { createHash } from "node:crypto";
import { access, mkdir } from "node:fs/promises";
import path from "node:path";
import { PdciError, errorMessage } from "../protocol/errors.js";
import { commitProblem, refProblem, repositoryUriProblem } from "../protocol/validate.js";
import { gitArchiveStream, gitWithInput } from "./git-process.js";
import { redactUri, runGit, type GitLog } from "./git-run.js";
import { KeyedSerializer } from "./keyed-serializer.js";

export interface CheckoutRequest {
  jobId: string;
  repositoryUri: string;
  /** Fully qualified ref to fetch; empty when only `commit` is given. */
  ref: string;
  /** Commit to check out when `ref` is empty; with a ref, the commit the ref must point to. */
  commit: string;
  /** Directory to create the checkout in; it must not exist or be empty. */
  workspace: string;
  log: GitLog;
}

/** How many fetched commits a mirror keeps as refs, for later fetches to negotiate from. */
const KEPT_TIPS = 16;
const KEEP_PREFIX = "refs/pdci/keep/";
const quiet: GitLog = () => undefined;

export class GitCheckout {
  private readonly cacheDir: string;
  private readonly blockTimeoutMs: number;
  private readonly mirrors = new KeyedSerializer();
  /** Fetches per mirror since start; pruning kept refs every few fetches is plenty. */
  private readonly fetches = new Map<string, number>();

  /** `blockTimeoutMs`: a git command that prints nothing for this long is killed. */
  constructor(opts: { cacheDir: string; blockTimeoutMs?: number }) {
    this.cacheDir = path.resolve(opts.cacheDir);
    this.blockTimeoutMs = opts.blockTimeoutMs ?? 10 * 60_000;
  }

  /** Fetch into the cache, then the workspace: see `fetch` and `materialize`. */
  async checkout(req: CheckoutRequest): Promise<{ commit: string }> {
    const { commit } = await this.fetch(req);
    await this.materialize(req, commit);
    return { commit };
  }

  private mirrorOf(repositoryUri: string): string {
    return path.join(this.cacheDir, createHash("sha256").update(repositoryUri).digest("hex"));
  }

  /** Fetches the revision into the repository's cache and returns its commit. */
  async fetch(req: CheckoutRequest): Promise<{ commit: string }> {
    checkRequest(req);
    const mirror = this.mirrorOf(req.repositoryUri);
    const jobRef = `refs/pdci/job/${refComponent(req.jobId)}`;
    // Only what changes the mirror's refs waits in the per-mirror queue; cloning from it does not
    // (the commit is held by a kept ref, so no later job can make it unreachable).
    const commit = await this.mirrors.run(mirror, async () => {
      await this.prepareMirror(mirror, req.log);
      let sha = "";
      try {
        sha = await this.fetchInto(mirror, jobRef, req);
      } finally {
        await this.settleRefs(mirror, jobRef, sha, req);
      }
      return sha;
    });
    return { commit };
  }

  /** Makes `req.workspace` a checkout of a fetched commit (objects shared with the cache). */
  async materialize(req: CheckoutRequest, commit: string): Promise<void> {
    const workspace = path.resolve(req.workspace);
    const mirror = this.mirrorOf(req.repositoryUri);
    await mkdir(path.dirname(workspace), { recursive: true });
    await this.git(
      this.cacheDir,
      ["clone", "--quiet", "--shared", "--no-checkout", "--", mirror, workspace],
      req.log,
    );
    await this.git(workspace, ["checkout", "--quiet", "--detach", commit], req.log);
    req.log(`checked out ${commit}`);
  }

  /** The tree of a fetched commit straight from the cache, so a build need not wait for a workspace. */
  archiveFromCache(repositoryUri: string, commit: string): NodeJS.ReadableStream {
    return this.archive(this.mirrorOf(repositoryUri), commit);
  }

  /** Streams `git archive --format=tar <commit>` of the workspace: a build context without `.git`. */
  archive(workspace: string, commit: string): NodeJS.ReadableStream {
    const problem = commitProblem(commit);
    if (problem) throw new PdciError("bad_input", `commit ${problem}`);
    return gitArchiveStream(workspace, commit);
  }

  private git(cwd: string, args: string[], log: GitLog): Promise<string> {
    return runGit(cwd, args, log, this.blockTimeoutMs);
  }

  private async prepareMirror(mirror: string, log: GitLog): Promise<void> {
    const exists = await access(path.join(mirror, "HEAD")).then(
      () => true,
      () => false,
    );
    if (exists) {
      log(`using the repository cache ${path.basename(mirror)}`);
      return;
    }
    log(`creating the repository cache ${path.basename(mirror)}`);
    await mkdir(mirror, { recursive: true });
    await this.git(mirror, ["init", "--quiet", "--bare"], quiet);
    // Workspaces borrow the mirror's objects, some of them reachable from no ref of the mirror:
    // automatic garbage collection could delete them under a running job.
    await this.git(mirror, ["config", "gc.auto", "0"], quiet);
    await this.git(mirror, ["config", "maintenance.auto", "false"], quiet);
  }

  private async fetchInto(mirror: string, jobRef: string, req: CheckoutRequest): Promise<string> {
    const fetch = ["fetch", "--no-tags", "--force", "--progress", "--", req.repositoryUri];
    if (req.ref !== "") {
      await this.git(mirror, [...fetch, `+${req.ref}:${jobRef}`], req.log);
      const sha = await this.revParse(mirror, `${jobRef}^{commit}`);
      if (req.commit !== "" && !sha.startsWith(req.commit.toLowerCase())) {
        throw new PdciError("git_failed", `${req.ref} points to ${sha}, not to the expected ${req.commit}`);
      }
      req.log(`fetched ${req.ref} at ${sha}`);
      return sha;
    }
    const wanted = req.commit.toLowerCase();
    let refusal = "";
    if (wanted.length === 40 || wanted.length === 64) {
      try {
        await this.git(mirror, [...fetch, `+${wanted}:${jobRef}`], req.log);
        return await this.revParse(mirror, `${jobRef}^{commit}`);
      } catch (err) {
        refusal = errorMessage(err);
        req.log("fetching the commit by its hash failed; fetching all branches instead");
      }
    }
    await this.git(mirror, [...fetch, `+refs/heads/*:${jobRef}-heads/*`], req.log);
    try {
      return await this.revParse(mirror, `${wanted}^{commit}`);
    } catch (err) {
      const detail = refusal === "" ? "" : ` (${refusal})`;
      const where = redactUri(req.repositoryUri);
      throw new PdciError("git_failed", `commit ${req.commit} is on no branch of ${where}${detail}`, {
        cause: err,
      });
    }
  }

  private async revParse(repo: string, rev: string): Promise<string> {
    return (await this.git(repo, ["rev-parse", "--verify", "--quiet", rev], quiet)).trim();
  }

  /**
   * Keeps the fetched commit as a ref of the mirror (later fetches negotiate from it) and deletes
   * the job's temporary ref, in one git call. Every KEPT_TIPS jobs the oldest kept refs go.
   * Failures are logged, never thrown: the job can go on.
   */
  private async settleRefs(mirror: string, jobRef: string, sha: string, req: CheckoutRequest): Promise<void> {
    try {
      if (req.ref !== "" && sha !== "") {
        await gitWithInput(
          mirror,
          ["update-ref", "--stdin"],
          `update ${KEEP_PREFIX}${sha} ${sha}\ndelete ${jobRef}\n`,
        );
      } else {
        if (sha !== "") await this.git(mirror, ["update-ref", `${KEEP_PREFIX}${sha}`, sha], quiet);
        const listing = ["for-each-ref", "--format=%(refname)", jobRef, `${jobRef}-heads/`];
        await deleteRefs(
          mirror,
          (await this.git(mirror, listing, quiet)).split("\n").filter((l) => l !== ""),
        );
      }
      const count = (this.fetches.get(mirror) ?? 0) + 1;
      this.fetches.set(mirror, count);
      if (count % KEPT_TIPS === 1) {
        const listing = ["for-each-ref", "--sort=-committerdate", "--format=%(refname)", KEEP_PREFIX];
        const kept = (await this.git(mirror, listing, quiet)).split("\n").filter((line) => line !== "");
        await deleteRefs(mirror, kept.slice(KEPT_TIPS));
      }
    } catch (err) {
      req.log(`warning: could not update the refs of the repository cache: ${errorMessage(err)}`);
    }
  }
}

async function deleteRefs(repo: string, refs: string[]): Promise<void> {
  if (refs.length === 0) return;
  await gitWithInput(repo, ["update-ref", "--stdin"], refs.map((ref) => `delete ${ref}\n`).join(""));
}

function checkRequest(req: CheckoutRequest): void {
  const problems: string[] = [];
  const uri = repositoryUriProblem(req.repositoryUri);
  if (uri) problems.push(`repository URI ${uri}`);
  const ref = req.ref === "" ? null : refProblem(req.ref);
  if (ref) problems.push(`ref ${ref}`);
  const commit = req.commit === "" ? null : commitProblem(req.commit);
  if (commit) problems.push(`commit ${commit}`);
  if (req.ref === "" && req.commit === "") problems.push("neither a ref nor a commit is given");
  if (problems.length > 0) throw new PdciError("bad_input", problems.join("; "));
}

/** The job id itself when it is a plain name, otherwise a hash of it: either way a valid ref part. */
function refComponent(jobId: string): string {
  if (/^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$/.test(jobId)) return jobId;
  return `h${createHash("sha256").update(jobId).digest("hex").slice(0, 40)}`;
}
