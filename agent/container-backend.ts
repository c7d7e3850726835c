/**
 * What the runner needs from a container engine: build an image from a tar context, run it with
 * limits and labels, and clean up. The Docker implementation is in docker-backend.ts.
 */
import type { Writable } from "node:stream";
import type { JobLimits } from "../protocol/messages.js";

/**
 * The reason given to a job's AbortController: a cancel with its own grace period (the
 * coordinator's job.cancel carries one; a fenced job gets none).
 */
export class CancelReason {
  constructor(
    readonly message: string,
    readonly graceMs: number,
  ) {}

  toString(): string {
    return this.message;
  }
}

export interface BuildRequest {
  jobId: string;
  /** Makes the build context, a tar stream: once per attempt, as a backend may start a build over. */
  context: () => NodeJS.ReadableStream;
  tag: string;
  labels: Record<string, string>;
  /** Receives the build output text. Never ended by the backend. */
  output: Writable;
  /** Aborting cancels the build. */
  signal: AbortSignal;
}

export interface RunRequest {
  jobId: string;
  image: string;
  labels: Record<string, string>;
  limits: JobLimits;
  /** Time from start after which the container is stopped and the run counts as timed out. */
  timeoutMs: number;
  /** Time a stopped container gets between SIGTERM and SIGKILL. */
  graceMs: number;
  /** Receives stdout and stderr bytes, in the order the container wrote them. Never ended by the backend. */
  output: Writable;
  /** Aborting cancels the run: the container is stopped with the grace period, then killed. */
  signal: AbortSignal;
}

export interface RunOutcome {
  /** The container's exit status; null when it could not be determined. */
  exitCode: number | null;
  timedOut: boolean;
  cancelled: boolean;
  containerId: string;
}

export interface ContainerBackend {
  /**
   * Builds `tag` from the context, starting over (with a new context) when the engine lost an image
   * the build was reading. Throws PdciError("build_failed") with the engine's error text when the
   * build fails, and PdciError("cancelled") when the signal aborts it.
   */
  build(req: BuildRequest): Promise<void>;
  /** Runs a container of `image` to its end; the container is removed afterwards in every case. */
  run(req: RunRequest): Promise<RunOutcome>;
  /**
   * Removes an image but not its untagged parents: those are the engine's build cache, which a build
   * running at the same time may be using. An image that does not exist is not an error.
   */
  removeImage(tag: string): Promise<void>;
  /** Pushes `tag` to the registry it names; throws PdciError("push_failed") when that fails. */
  push(tag: string, output: Writable): Promise<void>;
  /** Removes all containers, running or not, that carry all of `labels`; returns how many. */
  removeLeftovers(labels: Record<string, string>): Promise<number>;
  /** Removes every tag of `repository` (e.g. `pdci-job/agent-1a2b3c`); returns how many. */
  removeImagesOf(repository: string): Promise<number>;
  /** Throws PdciError("docker_unavailable") when the engine does not answer. */
  ping(): Promise<void>;
}
