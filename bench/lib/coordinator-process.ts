/**
 * A coordinator in its own process, so that its memory and CPU time can be read from /proc and
 * profiled alone. Configured like `phab-dock-ci coordinator` (same option reader and defaults),
 * listening on 127.0.0.1 port 0; prints one JSON line `{"ev":"ready","url":…}` once it listens.
 *
 * stdin commands (one per line): `profile-start`, `profile-stop <file>` (writes a .cpuprofile),
 * `memory` (prints process and V8 heap figures), `heap <file>` (writes a heap snapshot).
 *
 * Environment: BENCH_COORDINATOR = JSON {dataDir, conduitUrl?, conduitToken?, agentToken,
 * timing?: Partial<Timing>}.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { createInterface } from "node:readline";
import { getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";
import { coordinatorConfig } from "../../bin/coordinator-command.js";
import type { CoordinatorConfig, Timing } from "../../coordinator/config.js";
import { startCoordinator } from "../../coordinator/coordinator.js";
import { consoleLogger } from "../../coordinator/logger.js";

interface Settings {
  dataDir: string;
  agentToken: string;
  conduitUrl?: string;
  conduitToken?: string;
  timing?: Partial<Timing>;
}

const emit = (msg: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(msg)}\n`);

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))),
  );
}

async function main(): Promise<void> {
  const settings = JSON.parse(process.env["BENCH_COORDINATOR"] ?? "{}") as Settings;
  const opts: Record<string, unknown> = { listen: "127.0.0.1:0", data: settings.dataDir };
  if (settings.conduitUrl) opts["conduitUrl"] = settings.conduitUrl;
  const base = coordinatorConfig(opts, {
    PDCI_AGENT_TOKEN: settings.agentToken,
    PDCI_CONDUIT_TOKEN: settings.conduitToken ?? "",
  });
  const config: CoordinatorConfig = { ...base, timing: { ...base.timing, ...settings.timing } };
  // Warnings and errors still reach stderr; per-job info lines would only measure the pipe.
  const coordinator = await startCoordinator(config, consoleLogger("coordinator", true));
  emit({ ev: "ready", url: coordinator.url, port: coordinator.port, pid: process.pid });

  let session: Session | null = null;
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [cmd, arg] = line.trim().split(/\s+/, 2);
    void (async () => {
      try {
        if (cmd === "profile-start") {
          session = new Session();
          session.connect();
          await post(session, "Profiler.enable");
          await post(session, "Profiler.setSamplingInterval", { interval: 200 });
          await post(session, "Profiler.start");
          emit({ ev: "profile-started" });
        } else if (cmd === "profile-stop" && session && arg) {
          const { profile } = await post<{ profile: unknown }>(session, "Profiler.stop");
          session.disconnect();
          session = null;
          writeFileSync(arg, JSON.stringify(profile));
          emit({ ev: "profile-written", file: arg });
        } else if (cmd === "memory") {
          const spaces = Object.fromEntries(
            getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size]),
          );
          emit({ ev: "memory", ...process.memoryUsage(), spaces });
        } else if (cmd === "heap" && arg) {
          emit({ ev: "heap-written", file: writeHeapSnapshot(arg) });
        }
      } catch (err) {
        emit({ ev: "error", message: String(err) });
      }
    })();
  });

  let stopping = false;
  process.on("SIGTERM", () => {
    if (stopping) return;
    stopping = true;
    void coordinator.close().finally(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  console.error(`coordinator-process: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
