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

/** User and system CPU time of a process (`/proc/<pid>/stat`) or one thread of it, in seconds. */
export function cpuTimes(pid: number, tid?: number): { user: number; system: number } {
  const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const text = readFileSync(path, "utf8");
  // The command name (field 2) may contain spaces; the fields after its closing parenthesis do not.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) is rest[12].
  return { user: Number(rest[11]) / CLK_TCK, system: Number(rest[12]) / CLK_TCK };
}

/** User plus system CPU time the process used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

/** Busy and total CPU time of the whole machine so far (first line of /proc/stat), in ticks. */
export function machineTicks(): { busy: number; total: number } {
  const first = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // idle (4th) and iowait (5th) are not busy.
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/** Where a process's CPU went over a window: kernel share, its main (JS) thread, the machine. */
export class CpuSplitMeter {
  private readonly proc0: { user: number; system: number };
  private readonly main0: { user: number; system: number };
  private readonly machine0: { busy: number; total: number };
  private readonly t0 = performance.now();

  constructor(private readonly pid: number) {
    this.proc0 = cpuTimes(pid);
    this.main0 = cpuTimes(pid, pid);
    this.machine0 = machineTicks();
  }

  /** Seconds of CPU in the window, in all, in the kernel, on the main thread; machine busy %. */
  read(): { cpuSeconds: number; systemSeconds: number; mainThreadSeconds: number; machineBusyPct: number } {
    const p = cpuTimes(this.pid);
    const m = cpuTimes(this.pid, this.pid);
    const machine = machineTicks();
    return {
      cpuSeconds: p.user + p.system - this.proc0.user - this.proc0.system,
      systemSeconds: p.system - this.proc0.system,
      mainThreadSeconds: m.user + m.system - this.main0.user - this.main0.system,
      machineBusyPct:
        (100 * (machine.busy - this.machine0.busy)) / Math.max(1, machine.total - this.machine0.total),
    };
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.t0) / 1000;
  }
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
