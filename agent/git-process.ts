/**
 * The environment git runs in, and the two git invocations that need a raw child process because
 * they stream: `git archive` (output) and `git update-ref --stdin` (input).
 */
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { PdciError } from "../protocol/errors.js";

/** Variables that would make git open an editor, a pager or a password prompt, or point it elsewhere. */
const DROPPED = new Set(["EDITOR", "VISUAL", "PAGER", "SSH_ASKPASS", "PREFIX"]);
/** Operator settings from the GIT_ family that are kept (transport configuration). */
const KEPT_GIT = new Set(["GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH"]);
const MAX_STDERR = 8192;

/** The agent's environment, cleaned so that git never prompts and never leaves the given directory. */
export function gitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || DROPPED.has(key)) continue;
    if (key.startsWith("GIT_") && !KEPT_GIT.has(key)) continue;
    env[key] = value;
  }
  env.GIT_TERMINAL_PROMPT = "0";
  // BatchMode makes ssh fail instead of asking for a password or an unknown host key.
  if (env.GIT_SSH === undefined && env.GIT_SSH_COMMAND === undefined) {
    env.GIT_SSH_COMMAND = "ssh -o BatchMode=yes";
  }
  return env;
}

function stderrCollector(): { add: (chunk: Buffer) => void; text: () => string } {
  let text = "";
  return {
    add: (chunk) => {
      if (text.length < MAX_STDERR) text += chunk.toString("utf8").slice(0, MAX_STDERR - text.length);
    },
    text: () => text.trim(),
  };
}

/**
 * Streams `git archive --format=tar <commit>` run in `cwd`. A failing git destroys the returned
 * stream with PdciError("git_failed"); the stream ends only after git exited successfully.
 */
export function gitArchiveStream(cwd: string, commit: string): NodeJS.ReadableStream {
  const out = new PassThrough();
  const child = spawn("git", ["archive", "--format=tar", commit, "--"], {
    cwd,
    env: gitEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr = stderrCollector();
  child.stderr.on("data", stderr.add);
  child.stdout.pipe(out, { end: false });
  child.on("error", (err) => out.destroy(new PdciError("git_failed", `git archive: ${err.message}`)));
  child.on("close", (code, signal) => {
    if (code === 0) out.end();
    else out.destroy(new PdciError("git_failed", `git archive failed (${code ?? signal}): ${stderr.text()}`));
  });
  // A consumer that gives up early must not leave git blocked on a full pipe.
  out.on("close", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return out;
}

/** Runs git with `input` on stdin; rejects with PdciError("git_failed") when it fails. */
export function gitWithInput(cwd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, env: gitEnv(), stdio: ["pipe", "ignore", "pipe"] });
    const stderr = stderrCollector();
    child.stderr.on("data", stderr.add);
    child.on("error", (err) => reject(new PdciError("git_failed", `git ${args[0]}: ${err.message}`)));
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new PdciError("git_failed", `git ${args.join(" ")} failed: ${stderr.text()}`));
    });
    child.stdin.on("error", () => undefined); // reported through the exit status instead
    child.stdin.end(input);
  });
}
