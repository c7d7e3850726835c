import { startCoordinator } from "../coordinator/coordinator.js";
import { consoleLogger } from "../coordinator/logger.js";
import { drainOnSignals, startAgent } from "./run-agent.js";
import { prepareSampleRepository, SAMPLE_DIFF } from "./sample-repo.js";
import type { UpConfig } from "./up-command.js";

export async function runUp(config: UpConfig): Promise<void> {
  const coordinator = await startCoordinator(config.coordinator, consoleLogger("coordinator"));
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
