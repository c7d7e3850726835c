#!/usr/bin/env node
import { Command } from "commander";
import ora from "ora";
import { Agent } from "../agent/agent.js";
import type { AgentConfig } from "../agent/config.js";
import { DockerBackend } from "../agent/docker-backend.js";
import { GitCheckout } from "../agent/git-checkout.js";
import { consoleLogger as agentLogger } from "../agent/logger.js";
import type { CoordinatorConfig } from "../coordinator/config.js";
import { startCoordinator, type RunningCoordinator } from "../coordinator/coordinator.js";
import { consoleLogger } from "../coordinator/logger.js";
import { PdciError } from "../protocol/errors.js";
import { join } from "node:path";
import { agentCommand } from "./agent-command.js";
import { coordinatorCommand } from "./coordinator-command.js";
import { prepareSampleRepository, SAMPLE_DIFF } from "./sample-repo.js";
import { upCommand, type UpConfig } from "./up-command.js";

/** Exit codes, in one place: 2 bad configuration, 3 Docker unavailable, 1 anything else. */
function exitCodeFor(err: unknown): number {
  if (err instanceof PdciError && err.code === "bad_config") return 2;
  if (err instanceof PdciError && err.code === "docker_unavailable") return 3;
  return 1;
}

/** First SIGTERM/SIGINT: `first`; a second one: `second`. */
function onSignals(first: () => void, second: () => void): void {
  let count = 0;
  const handler = () => (++count === 1 ? first() : second());
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

async function startAgent(config: AgentConfig, quiet = false): Promise<Agent> {
  const log = agentLogger(`agent ${config.name}`, quiet);
  const backend = new DockerBackend({ socketPath: config.dockerSocket });
  await backend.ping();
  const git = new GitCheckout({ cacheDir: join(config.workDir, "mirrors") });
  const agent = new Agent(config, git, backend, log);
  await agent.start();
  return agent;
}

/** Drain on the first signal (finish running jobs, take no new ones); cancel them on the second. */
function drainOnSignals(agent: Agent, after: () => Promise<void> = async () => {}): void {
  onSignals(
    () => {
      console.error("draining: finishing running jobs, taking no new ones (signal again to cancel them)");
      void agent.drain().then(async () => {
        await agent.stop();
        await after();
        process.exit(0);
      });
    },
    () => agent.cancelAll("the agent is shutting down"),
  );
}

async function runCoordinator(config: CoordinatorConfig): Promise<void> {
  const coordinator = await startCoordinator(config, consoleLogger("coordinator"));
  onSignals(
    () => void coordinator.close().then(() => process.exit(0)),
    () => process.exit(1),
  );
}

async function runAgent(config: AgentConfig): Promise<void> {
  const spinner = ora(`connecting to ${config.url}`).start();
  const agent = await startAgent(config);
  const started = Date.now();
  const poll = setInterval(() => {
    if (agent.connected) {
      spinner.succeed(`agent ${config.name} ready (capacity ${config.capacity})`);
      clearInterval(poll);
    } else if (Date.now() - started > 60_000) {
      spinner.warn("still connecting; retrying in the background");
      clearInterval(poll);
    }
  }, 100);
  drainOnSignals(agent);
}

async function runUp(config: UpConfig): Promise<void> {
  const coordinator: RunningCoordinator = await startCoordinator(
    config.coordinator,
    consoleLogger("coordinator"),
  );
  const agent = await startAgent(config.agent);
  const sample = prepareSampleRepository(config.coordinator.dataDir, config.sampleBase);
  const base = config.coordinator.publicUrl || coordinator.url;
  const query = `target=PHID-HMBT-sample${Date.now().toString(36)}&staging=${sample}&ref=refs/tags/phabricator/diff/${SAMPLE_DIFF}`;
  console.log(`
phab-dock-ci is up.
  Web UI:       ${coordinator.url}/api/jobs
  Webhook URL for the Harbormaster "Make HTTP Request" step:
    ${base}/harbormaster?target=\${target.phid}&staging=\${repository.staging.uri}&ref=\${repository.staging.ref}&diff=\${buildable.diff}&revision=\${buildable.revision}&build=\${build.id}
  Try it without Phabricator (builds the sample repository ${sample}):
    curl -X POST '${coordinator.url}/harbormaster?${query}'
`);
  drainOnSignals(agent, () => coordinator.close());
}

const program = new Command("phab-dock-ci")
  .description("CI for Phabricator/Phorge Harbormaster with Docker build agents")
  .addCommand(coordinatorCommand(runCoordinator))
  .addCommand(agentCommand(runAgent))
  .addCommand(upCommand(runUp));

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`phab-dock-ci: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(exitCodeFor(err));
});
