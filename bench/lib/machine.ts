/** What the benchmarks ran on, for the head of RESULTS.md. */
import { execFileSync } from "node:child_process";
import { cpus, release, totalmem } from "node:os";
import Dockerode from "dockerode";

function gitVersion(): string {
  try {
    return execFileSync("git", ["--version"], { encoding: "utf8" })
      .trim()
      .replace(/^git version /, "");
  } catch {
    return "unknown";
  }
}

export async function machineLines(docker: Dockerode): Promise<string[]> {
  const info = cpus();
  let dockerText = "unknown";
  try {
    const v = await docker.version();
    dockerText = `${v.Version} (API ${v.ApiVersion})`;
  } catch {
    // reported as unknown
  }
  return [
    `- date: ${new Date().toISOString()}`,
    `- cores: ${info.length} × ${info[0]?.model.trim() ?? "unknown"}`,
    `- memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- Node.js: ${process.version}`,
    `- Docker engine: ${dockerText}`,
    `- git: ${gitVersion()}`,
    `- kernel: Linux ${release()}`,
  ];
}
