/** Readings of other processes from /proc (Linux): resident memory and CPU time. */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux this runs on. */
const CLK_TCK = 100;

function statusField(pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Resident set size in bytes. */
export const rssBytes = (pid: number): number => statusField(pid, "VmRSS");

/** Peak resident set size since the process started, in bytes. */
export const peakRssBytes = (pid: number): number => statusField(pid, "VmHWM");

/** User plus system CPU time the process used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may contain spaces; the fields after its closing parenthesis do not.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) is rest[12].
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** Samples a process's CPU use between two points in time. */
export class CpuMeter {
  private cpu0: number;
  private t0: number;

  constructor(private readonly pid: number) {
    this.cpu0 = cpuSeconds(pid);
    this.t0 = performance.now();
  }

  /** Percent of one core used since the last call (or construction); restarts the window. */
  lap(): number {
    const cpu = cpuSeconds(this.pid);
    const t = performance.now();
    const pct = ((cpu - this.cpu0) / ((t - this.t0) / 1000)) * 100;
    this.cpu0 = cpu;
    this.t0 = t;
    return pct;
  }
}

/** Samples RSS of some processes every `everyMs` and keeps the largest value seen of each. */
export class RssSampler {
  readonly peaks = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: number[],
    everyMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): void {
    for (const pid of this.pids) {
      try {
        this.peaks.set(pid, Math.max(this.peaks.get(pid) ?? 0, rssBytes(pid)));
      } catch {
        // the process ended; keep what was seen
      }
    }
  }

  stop(): Map<number, number> {
    clearInterval(this.timer);
    this.sample();
    return this.peaks;
  }
}
