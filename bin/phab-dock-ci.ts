#!/usr/bin/env node
import { Command } from "commander";
import { PdciError } from "../protocol/errors.js";
import { agentCommand } from "./agent-command.js";
import { coordinatorCommand } from "./coordinator-command.js";
import { upCommand } from "./up-command.js";

/** Exit codes, in one place: 2 bad configuration, 3 Docker unavailable, 1 anything else. */
function exitCodeFor(err: unknown): number {
  if (err instanceof PdciError && err.code === "bad_config") return 2;
  if (err instanceof PdciError && err.code === "docker_unavailable") return 3;
  return 1;
}

// Each role loads only its own code: an agent on a build host never loads SQLite or the Conduit
// client, which keeps its memory small.
const program = new Command("phab-dock-ci")
  .description("CI for Phabricator/Phorge Harbormaster with Docker build agents")
  .addCommand(coordinatorCommand(async (c) => (await import("./run-coordinator.js")).runCoordinator(c)))
  .addCommand(agentCommand(async (c) => (await import("./run-agent.js")).runAgent(c)))
  .addCommand(upCommand(async (c) => (await import("./run-up.js")).runUp(c)));

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`phab-dock-ci: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(exitCodeFor(err));
});
