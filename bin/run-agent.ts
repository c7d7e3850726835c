import { join } from "node:path";
import { Agent } from "../agent/agent.js";
import type { AgentConfig } from "../agent/config.js";
import { DockerBackend } from "../agent/docker-backend.js";
import { GitCheckout } from "../agent/git-checkout.js";
import { consoleLogger } from "../agent/logger.js";
import { onSignals } from "./signals.js";

export async function startAgent(config: AgentConfig): Promise<Agent> {
  const backend = new DockerBackend({ socketPath: config.dockerSocket });
  await backend.ping();
  const git = new GitCheckout({ cacheDir: join(config.workDir, "mirrors") });
  const agent = new Agent(config, git, backend, consoleLogger(`agent ${config.name}`));
  await agent.start();
  return agent;
}

/** Drain on the first signal (finish running jobs, take no new ones); cancel them on the second. */
export function drainOnSignals(agent: Agent, after: () => Promise<void> = async () => {}): void {
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

/** A spinner for people watching a terminal; loaded only then, a service does not pay for it. */
async function showProgress(agent: Agent, config: AgentConfig): Promise<void> {
  if (!process.stderr.isTTY) return;
  const { default: ora } = await import("ora");
  const spinner = ora(`connecting to ${config.url}`).start();
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
}

export async function runAgent(config: AgentConfig): Promise<void> {
  const agent = await startAgent(config);
  drainOnSignals(agent);
  await showProgress(agent, config);
}
