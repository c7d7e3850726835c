/**
 * One git command through simple-git: logged as `$ git …` with credentials hidden, the final state of
 * each progress line logged after it, and any failure turned into PdciError("git_failed").
 */
import type { SimpleGitFactory } from "simple-git";
import { PdciError, errorMessage } from "../protocol/errors.js";
import { gitEnv } from "./git-process.js";

export type GitLog = (text: string) => void;

/** Commands worth showing in a job log (plumbing stays silent), and whether their stderr is too. */
const LOGGED = new Map([
  ["fetch", true],
  ["clone", false], // it warns that the mirror has no branches, which is expected
  ["checkout", false],
]);
const MAX_LOGGED_LINES = 40;

/** Hides the password in `scheme://user:password@host/…`, wherever it occurs in `text`. */
export function redactUri(text: string): string {
  return text.replace(/(:\/\/[^/@\s:]*):[^/@\s]*@/g, "$1:***@");
}

/**
 * Collects stderr lines as they complete. Progress meters rewrite a line with `\r`; only the text
 * after the last `\r` of a line (its final state) is kept.
 */
class LineCollector {
  readonly lines: string[] = [];
  private pending = "";

  add(text: string): void {
    const parts = (this.pending + text).split("\n");
    this.pending = lastState(parts.pop() ?? "");
    for (const part of parts) this.keep(lastState(part));
  }

  finish(): string[] {
    this.keep(this.pending);
    this.pending = "";
    return this.lines;
  }

  private keep(line: string): void {
    const trimmed = line.trimEnd();
    if (trimmed !== "" && this.lines.length < MAX_LOGGED_LINES) this.lines.push(trimmed);
  }
}

function lastState(line: string): string {
  return line.slice(line.lastIndexOf("\r") + 1);
}

/** simple-git is loaded with the first git command: an idle agent does not carry it. */
let factory: Promise<SimpleGitFactory> | null = null;
function loadSimpleGit(): Promise<SimpleGitFactory> {
  factory ??= import("simple-git").then((m) => m.simpleGit);
  return factory;
}

export async function runGit(
  cwd: string,
  args: string[],
  log: GitLog,
  blockTimeoutMs: number,
): Promise<string> {
  const logged = LOGGED.has(args[0] ?? "");
  const showStderr = LOGGED.get(args[0] ?? "") === true;
  if (logged) log(`$ git ${redactUri(args.join(" "))}`);
  const stderr = new LineCollector();
  const simpleGit = await loadSimpleGit();
  const git = simpleGit({
    baseDir: cwd,
    timeout: { block: blockTimeoutMs },
    // The agent sets GIT_SSH_COMMAND itself (or keeps the operator's); user input never reaches it.
    unsafe: { allowUnsafeSshCommand: true },
    // simple-git counts a non-zero exit without stderr as success; for us any non-zero exit fails.
    errors: (error, result) => {
      if (error || result.exitCode === 0) return error;
      const text = Buffer.concat(result.stdErr).toString().trim();
      return new Error(text === "" ? `exit status ${result.exitCode}` : text);
    },
  })
    .env(gitEnv())
    .outputHandler((_command, _stdout, errors) => {
      errors.on("data", (chunk: Buffer | string) => stderr.add(chunk.toString()));
    });
  try {
    const out = await git.raw(args);
    if (showStderr) for (const line of stderr.finish()) log(`  ${redactUri(line)}`);
    return out;
  } catch (err) {
    const detail = redactUri(errorMessage(err).trim());
    throw new PdciError("git_failed", `git ${args[0] ?? ""} failed: ${detail}`, { cause: err });
  }
}
