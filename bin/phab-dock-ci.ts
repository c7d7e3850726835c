#!/usr/bin/env node
import { PdciError } from "../protocol/errors.js";
import { agentCommand } from "./agent-command.js";
import { commandHelp, parseCommandArgs, programHelp, type CommandSpec } from "./cli.js";
import { coordinatorCommand } from "./coordinator-command.js";
import { upCommand } from "./up-command.js";

const PROGRAM = "phab-dock-ci";
const DESCRIPTION = "CI for Phabricator/Phorge Harbormaster with Docker build agents";

/** Exit codes, in one place: 2 bad configuration or usage, 3 Docker unavailable, 1 anything else. */
function exitCodeFor(err: unknown): number {
  if (err instanceof PdciError && err.code === "bad_config") return 2;
  if (err instanceof PdciError && err.code === "docker_unavailable") return 3;
  return 1;
}

// Each role loads only its own code: an agent on a build host never loads SQLite or the Conduit
// client, which keeps its memory small.
const commands: CommandSpec[] = [
  coordinatorCommand(async (c) => (await import("./run-coordinator.js")).runCoordinator(c)),
  agentCommand(async (c) => (await import("./run-agent.js")).runAgent(c)),
  upCommand(async (c) => (await import("./run-up.js")).runUp(c)),
];

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(programHelp(PROGRAM, DESCRIPTION, commands));
    if (name === undefined) process.exitCode = 2;
    return;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    throw new PdciError(
      "bad_config",
      `unknown command '${name}'; commands: ${commands.map((c) => c.name).join(", ")}`,
    );
  }
  const opts = parseCommandArgs(cmd, args);
  if (opts === "help") {
    console.log(commandHelp(PROGRAM, cmd));
    return;
  }
  await cmd.run(opts);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`${PROGRAM}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(exitCodeFor(err));
});
