import type { BackoffOptions } from "../protocol/backoff.js";

export interface AgentConfig {
  /** ws:// or wss:// URL of the coordinator's /agent endpoint. */
  url: string;
  token: string;
  name: string;
  labels: string[];
  /** Jobs run at once. */
  capacity: number;
  /** Holds the mirror cache, per-job workspaces and the agent's identity. */
  workDir: string;
  /** Path of the Docker engine socket. */
  dockerSocket: string;
  reconnect: BackoffOptions;
  /** Unacknowledged log bytes per job kept in memory. */
  logMemoryBytes: number;
  /** Unacknowledged log bytes per job spilled to disk before the container's output is held back. */
  logSpillBytes: number;
}

/** 1 s .. 60 s: quick after a blip, gentle on a coordinator that is down for a while. */
export const DEFAULT_RECONNECT: BackoffOptions = Object.freeze({ baseMs: 1_000, capMs: 60_000 });
/**
 * Unacknowledged log bytes held in memory while connected: at the coordinator's pace (about
 * 150 MiB/s) some 25 ms of output, which keeps the stream moving. Measured with a container
 * writing 1 GiB (bench 5): 8 MiB streamed no faster and peaked about 40 MiB higher in RSS. A
 * disconnected agent spills beyond it to disk.
 */
export const DEFAULT_LOG_MEMORY_BYTES = 4 * 1024 * 1024;
/** Rides out a coordinator outage of minutes even for chatty jobs. */
export const DEFAULT_LOG_SPILL_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";
