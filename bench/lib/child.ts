/**
 * Child processes of the benchmarks: started with a raised descriptor limit when asked, read line
 * by line, and stopped by their own PID (SIGTERM, then SIGKILL after a grace period).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** dist/ of this checkout (this file is dist/bench/lib/child.js once compiled). */
export const DIST = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The checkout itself: the nearest directory above dist/ with the package manifest. */
export const REPO = ((): string => {
  let dir = resolve(DIST, "..");
  for (let i = 0; i < 8 && !existsSync(join(dir, "package.json")); i++) dir = resolve(dir, "..");
  return dir;
})();
/** The command line entry point. */
export const CLI = join(DIST, "bin", "phab-dock-ci.js");

export const benchScript = (name: string): string => join(DIST, "bench", "lib", `${name}.js`);

const TAIL_LINES = 200;
const live = new Set<Child>();

export interface SpawnOptions {
  /** Shown in errors. */
  name: string;
  args?: string[];
  nodeArgs?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Raises the open-file limit first (through bash's ulimit; the benchmarks run as root). */
  fdLimit?: number;
  /** Copies the child's stderr to ours (for debugging). */
  echoStderr?: boolean;
}

export class Child {
  readonly pid: number;
  readonly startedAt = performance.now();
  /** The last lines of stdout and stderr, for error messages. */
  readonly tail: string[] = [];
  private readonly listeners = new Set<(line: string) => void>();
  private exitCode: number | null | undefined = undefined;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    private readonly proc: ChildProcess,
    echoStderr: boolean,
  ) {
    if (proc.pid === undefined) throw new Error(`${name}: could not start`);
    this.pid = proc.pid;
    live.add(this);
    this.exited = new Promise((done) =>
      proc.once("exit", (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        live.delete(this);
        done();
      }),
    );
    const keep = (line: string) => {
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
    };
    if (proc.stdout) {
      createInterface({ input: proc.stdout }).on("line", (line) => {
        keep(line);
        for (const l of this.listeners) l(line);
      });
    }
    if (proc.stderr) {
      createInterface({ input: proc.stderr }).on("line", (line) => {
        keep(line);
        if (echoStderr) process.stderr.write(`[${name}] ${line}\n`);
      });
    }
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every stdout line that is a JSON object is passed to `listener`. */
  onJson(listener: (msg: Record<string, unknown>) => void): () => void {
    return this.onLine((line) => {
      if (!line.startsWith("{")) return;
      try {
        listener(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not one of ours
      }
    });
  }

  /** Resolves with the first stdout line that satisfies `pred`; rejects on timeout or exit. */
  waitForLine(pred: (line: string) => boolean, timeoutMs: number): Promise<string> {
    return new Promise((resolveLine, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(
          new Error(
            `${this.name}: no expected output within ${timeoutMs} ms; last output:\n${this.tailText()}`,
          ),
        );
      }, timeoutMs);
      const off = this.onLine((line) => {
        if (!pred(line)) return;
        clearTimeout(timer);
        off();
        resolveLine(line);
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        off();
        reject(new Error(`${this.name} exited (${String(this.exitCode)}); last output:\n${this.tailText()}`));
      });
    });
  }

  /** Waits for a JSON line whose `ev` is `event`. */
  async waitForEvent(event: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const line = await this.waitForLine((l) => l.startsWith("{") && l.includes(`"ev":"${event}"`), timeoutMs);
    return JSON.parse(line) as Record<string, unknown>;
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    this.proc.stdin?.write(`${line}\n`);
  }

  /** Sends a signal to the child (by its PID). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, sig);
  }

  tailText(): string {
    return this.tail.slice(-30).join("\n");
  }

  /** SIGTERM, then SIGKILL when it has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    try {
      process.kill(this.pid, "SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      if (this.running) {
        try {
          process.kill(this.pid, "SIGKILL");
        } catch {
          // gone in the meantime
        }
      }
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  async waitExit(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    return this.exitCode ?? null;
  }
}

/** Starts `node [nodeArgs] script [args]`. */
export function spawnNode(script: string, opts: SpawnOptions): Child {
  const nodeArgv = [...(opts.nodeArgs ?? []), script, ...(opts.args ?? [])];
  const env = { ...process.env, ...opts.env };
  const stdio: ["pipe", "pipe", "pipe"] = ["pipe", "pipe", "pipe"];
  let proc: ChildProcess;
  if (opts.fdLimit) {
    // `exec` keeps the PID: the PID we measure is node's.
    const raise = `ulimit -n ${opts.fdLimit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
    proc = spawn("bash", ["-c", raise, process.execPath, ...nodeArgv], { env, cwd: opts.cwd, stdio });
  } else {
    proc = spawn(process.execPath, nodeArgv, { env, cwd: opts.cwd, stdio });
  }
  return new Child(opts.name, proc, opts.echoStderr ?? process.env["BENCH_VERBOSE"] === "1");
}

/** Starts any command (the baseline script). */
export function spawnCommand(
  command: string,
  args: string[],
  opts: { name: string; env?: Record<string, string>; cwd?: string },
): Child {
  const proc = spawn(command, args, {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Child(opts.name, proc, process.env["BENCH_VERBOSE"] === "1");
}

/** Stops every child still running (on the way out, also after a failure). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(5_000)));
}

/** Last resort when the bench process exits: no child outlives it. */
export function killAllNow(): void {
  for (const c of live) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
