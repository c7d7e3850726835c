import type { CoordinatorConfig } from "../coordinator/config.js";
import { startCoordinator } from "../coordinator/coordinator.js";
import { consoleLogger } from "../coordinator/logger.js";
import { onSignals } from "./signals.js";

export async function runCoordinator(config: CoordinatorConfig): Promise<void> {
  const coordinator = await startCoordinator(config, consoleLogger("coordinator"));
  onSignals(
    () => void coordinator.close().then(() => process.exit(0)),
    () => process.exit(1),
  );
}
