/**
 * A container backend and a source checkout that finish at once, so that a benchmark times only
 * the agent's and the coordinator's own code: no git, no Docker.
 */
import { Readable, type Writable } from "node:stream";
import type {
  BuildRequest,
  ContainerBackend,
  RunOutcome,
  RunRequest,
} from "../../agent/container-backend.js";
import type { CheckoutRequest } from "../../agent/git-checkout.js";
import type { SourceCheckout } from "../../agent/source-checkout.js";

const ZERO_COMMIT = "0".repeat(40);

export class InstantCheckout implements SourceCheckout {
  /** `onCheckout` runs synchronously when a job starts, right after its job.assign was handled. */
  constructor(private readonly onCheckout: (jobId: string) => void = () => undefined) {}

  fetch(req: CheckoutRequest): Promise<{ commit: string }> {
    this.onCheckout(req.jobId);
    return Promise.resolve({ commit: ZERO_COMMIT });
  }

  materialize(): Promise<void> {
    return Promise.resolve();
  }

  archiveFromCache(): NodeJS.ReadableStream {
    return Readable.from([]);
  }
}

export class InstantBackend implements ContainerBackend {
  runs = 0;

  build(req: BuildRequest): Promise<void> {
    req.output.write("Step 1/1 : instant\n");
    return Promise.resolve();
  }

  run(req: RunRequest): Promise<RunOutcome> {
    this.runs += 1;
    req.output.write(`instant job ${req.jobId}\n`);
    return Promise.resolve({
      exitCode: 0,
      timedOut: false,
      cancelled: false,
      containerId: `instant-${req.jobId}`,
    });
  }

  removeImage(): Promise<void> {
    return Promise.resolve();
  }

  push(_tag: string, _output: Writable): Promise<void> {
    return Promise.resolve();
  }

  removeLeftovers(): Promise<number> {
    return Promise.resolve(0);
  }

  removeImagesOf(): Promise<number> {
    return Promise.resolve(0);
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }
}
