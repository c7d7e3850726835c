/** Profiling the coordinator process while something runs, and reading its memory figures. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { profileMarkdown, summarizeProfile } from "./cpuprofile.js";
import type { CoordinatorProcess } from "./stack.js";

/** Every profile file written in this run, printed at the end. */
export const profileFiles: string[] = [];
let dir: string | null = null;

/** A directory for profiles that outlives the benchmarks' scratch directories. */
export function profileDir(): string {
  dir ??= mkdtempSync(join(tmpdir(), "pdci-bench-profiles-"));
  return dir;
}

/** Profiles the coordinator while `during` runs; returns markdown lines and the profile file. */
export async function profileCoordinator(
  coordinator: CoordinatorProcess,
  title: string,
  during: () => Promise<void>,
): Promise<{ lines: string[]; file: string }> {
  const file = join(profileDir(), `coordinator-${Date.now()}.cpuprofile`);
  profileFiles.push(file);
  const started = coordinator.child.waitForEvent("profile-started", 10_000);
  coordinator.child.send("profile-start");
  await started;
  try {
    await during();
  } finally {
    const written = coordinator.child.waitForEvent("profile-written", 60_000);
    coordinator.child.send(`profile-stop ${file}`);
    await written;
  }
  return { lines: profileMarkdown(title, summarizeProfile(file)), file };
}

export interface MemoryFigures {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, number>;
}

export async function coordinatorMemory(coordinator: CoordinatorProcess): Promise<MemoryFigures> {
  const answer = coordinator.child.waitForEvent("memory", 10_000);
  coordinator.child.send("memory");
  return (await answer) as unknown as MemoryFigures;
}
