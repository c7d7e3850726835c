import { createHash, randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage, PdciError } from "../protocol/errors.js";
import type { JobPhase, JobResult, JobSpec } from "../protocol/messages.js";
import type { ContainerBackend } from "./container-backend.js";
import type { SourceCheckout } from "./source-checkout.js";
import type { LogStreamer } from "./log-streamer.js";

export const LABEL_JOB = "phab-dock-ci.job";
export const LABEL_AGENT = "phab-dock-ci.agent";
/** On job images: their tag, which is unique (it holds the agent, the job and a random part). */
export const LABEL_IMAGE = "phab-dock-ci.image";

/**
 * Job images live in one repository per agent, so an agent finds the images an earlier life of it
 * left behind by name. Docker repository names are lowercase; the hash keeps names that differ only
 * in case apart.
 */
export function imageRepository(agentName: string): string {
  const safe =
    agentName
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40) || "agent";
  return `pdci-job/${safe}-${createHash("sha256").update(agentName).digest("hex").slice(0, 6)}`;
}

export interface JobOutcome {
  result: JobResult;
  exitCode: number | null;
  reason: string;
}

export interface RunJobContext {
  jobId: string;
  spec: JobSpec;
  agentName: string;
  workDir: string;
  git: SourceCheckout;
  backend: ContainerBackend;
  log: LogStreamer;
  signal: AbortSignal;
  phase: (phase: JobPhase) => void;
  /** Work that may finish after the outcome is known (cleanup); the caller waits for it later. */
  background: (work: Promise<void>) => void;
  warn: (message: string) => void;
}

function banner(log: LogStreamer, text: string): void {
  log.line(`\n--- phab-dock-ci: ${text}`);
}

/** Tags allow only a small alphabet; job ids are numbers, the suffix keeps retries apart. */
function imageTag(agentName: string, jobId: string): string {
  const safe = jobId.replace(/[^A-Za-z0-9_.-]/g, "").slice(0, 32) || "job";
  return `${imageRepository(agentName)}:${safe}-${randomBytes(4).toString("hex")}`;
}

function cancelledOutcome(signal: AbortSignal): JobOutcome {
  return {
    result: "cancelled",
    exitCode: null,
    reason: `cancelled: ${String(signal.reason ?? "by request")}`,
  };
}

/**
 * Runs one job start to end: checkout, build, run. Never throws: every failure becomes a `fail`
 * outcome with a reason. The container is removed before it returns; the image and workspace are
 * removed in every case, in the background (see `background`).
 */
export async function runJob(ctx: RunJobContext): Promise<JobOutcome> {
  const { spec, log, signal } = ctx;
  const workspace = join(ctx.workDir, "workspaces", `job-${ctx.jobId}-${randomBytes(3).toString("hex")}`);
  const tag = imageTag(ctx.agentName, ctx.jobId);
  const labels = { [LABEL_JOB]: ctx.jobId, [LABEL_AGENT]: ctx.agentName };
  let built = false;
  let workspaceReady: Promise<void> = Promise.resolve();
  try {
    ctx.phase("fetching");
    banner(log, `fetching ${spec.ref || spec.commit} from ${spec.repositoryUri}`);
    const source = {
      jobId: ctx.jobId,
      repositoryUri: spec.repositoryUri,
      ref: spec.ref,
      commit: spec.commit,
      workspace,
      log: (text: string) => log.line(text),
    };
    const { commit } = await ctx.git.fetch(source);
    if (signal.aborted) return cancelledOutcome(signal);

    // The build reads the tree from the cache; the workspace is checked out meanwhile, its lines
    // held back so they do not interleave with the build output.
    const held: string[] = [];
    workspaceReady = ctx.git.materialize({ ...source, log: (text) => held.push(text) }, commit);
    ctx.phase("building");
    banner(log, `building commit ${commit}`);
    built = true;
    await ctx.backend.build({
      jobId: ctx.jobId,
      context: () => ctx.git.archiveFromCache(spec.repositoryUri, commit),
      tag,
      // The label makes the image this job's own: two jobs building the same tree (capacity > 1, or
      // agents sharing an engine) would otherwise get one image id from the build cache, and the
      // first job's cleanup would delete the image under the second one between its build and run.
      // One label only: the engine adds a build step per label.
      labels: { [LABEL_IMAGE]: tag },
      output: log.writable,
      signal,
    });
    await workspaceReady;
    for (const line of held) log.line(line);
    if (signal.aborted) return cancelledOutcome(signal);

    ctx.phase("running");
    banner(log, "running the image's default command");
    const run = await ctx.backend.run({
      jobId: ctx.jobId,
      image: tag,
      labels,
      limits: spec.limits,
      timeoutMs: spec.timeoutMs,
      graceMs: spec.cancelGraceMs,
      output: log.writable,
      signal,
    });
    if (run.cancelled) return cancelledOutcome(signal);
    if (run.timedOut) {
      banner(log, `timed out after ${spec.timeoutMs} ms`);
      return {
        result: "fail",
        exitCode: run.exitCode,
        reason: `timed out after ${Math.round(spec.timeoutMs / 1000)} s`,
      };
    }
    banner(log, `exit code ${run.exitCode ?? "unknown"}`);
    if (run.exitCode === 0) return { result: "pass", exitCode: 0, reason: "" };
    return { result: "fail", exitCode: run.exitCode, reason: `exit code ${run.exitCode ?? "unknown"}` };
  } catch (err) {
    if (signal.aborted) return cancelledOutcome(signal);
    const code = err instanceof PdciError ? err.code : "agent_error";
    banner(log, `${code}: ${errorMessage(err)}`);
    const stage =
      code === "git_failed" || code === "bad_input"
        ? "checkout failed"
        : code === "build_failed"
          ? "build failed"
          : "error";
    return { result: "fail", exitCode: null, reason: `${stage}: ${firstLine(errorMessage(err))}` };
  } finally {
    // The container is already removed; the image and workspace go while the result is reported.
    ctx.phase("cleaning");
    ctx.background(cleanup(ctx, workspace, built ? tag : null, workspaceReady));
  }
}

function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

async function cleanup(
  ctx: RunJobContext,
  workspace: string,
  tag: string | null,
  workspaceReady: Promise<void>,
): Promise<void> {
  const errors: string[] = [];
  // A checkout still writing would race the removal of its directory.
  await workspaceReady.catch(() => undefined);
  if (tag)
    await ctx.backend.removeImage(tag).catch((err: unknown) => errors.push(`image: ${errorMessage(err)}`));
  await rm(workspace, { recursive: true, force: true }).catch((err: unknown) =>
    errors.push(`workspace: ${errorMessage(err)}`),
  );
  if (errors.length > 0) ctx.warn(`job ${ctx.jobId}: cleanup problems: ${errors.join("; ")}`);
}
