/** The container backend on a Docker engine, through dockerode. */
import type { Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import type Dockerode from "dockerode";
import { PdciError, errorMessage } from "../protocol/errors.js";
import type { BuildRequest, ContainerBackend, RunOutcome, RunRequest } from "./container-backend.js";
import { followDockerProgress } from "./docker-progress.js";
import { loadDockerode } from "./dockerode-loader.js";
import { destroyStream, runContainer } from "./docker-run.js";

const DEFAULT_SOCKET = "/var/run/docker.sock";
const PING_TIMEOUT_MS = 5000;

function statusCode(err: unknown): number | undefined {
  if (err === null || typeof err !== "object" || !("statusCode" in err)) return undefined;
  return typeof err.statusCode === "number" ? err.statusCode : undefined;
}

/** Splits `registry:5000/name:tag` into the repository and the tag ("latest" when none is given). */
export function splitTag(image: string): { repo: string; tag: string } {
  const colon = image.lastIndexOf(":");
  if (colon > image.lastIndexOf("/")) return { repo: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repo: image, tag: "latest" };
}

const CACHE_RACE =
  /unable to find image "?sha256:[0-9a-f]{12}|no such image: sha256:[0-9a-f]{12}|unknown parent image id sha256:|failed to get digest sha256:[0-9a-f]{12}/i;

/**
 * Whether a build failed only because an image went away under it, though nothing is wrong with the
 * build. The engine's cache lookup reads every image built on the same parent, and one removed at
 * that moment (another job's clean-up, a `docker image prune` from cron) fails the build; a prune
 * can also remove the image of the build's own last step (untagged until the build ends) before the
 * next step starts from it. Image ids are named by their digest in these messages; a Dockerfile's
 * own missing image is named as written.
 */
export function isBuildCacheRace(message: string): boolean {
  return CACHE_RACE.test(message);
}

/** How a build that lost an image under it starts over; the pause lets a prune get further. */
const RETRIES_AFTER_LOST_IMAGE = [
  {
    noCache: false,
    pauseMs: 1000,
    note: "an image this build read as cache was removed meanwhile; building again",
  },
  {
    noCache: true,
    pauseMs: 0,
    note: "the build cache is changing under this build; building again without it",
  },
];

export class DockerBackend implements ContainerBackend {
  private readonly docker: Dockerode;
  private readonly socketPath: string;
  private readonly registryAuth: Dockerode.AuthConfig | undefined;

  /** `registryAuth`: credentials sent with pushes; without them the registry must accept anonymous pushes. */
  constructor(opts: { socketPath?: string; docker?: Dockerode; registryAuth?: Dockerode.AuthConfig } = {}) {
    const modemSocket: unknown = opts.docker ? Reflect.get(opts.docker.modem, "socketPath") : undefined;
    this.socketPath = opts.socketPath ?? (typeof modemSocket === "string" ? modemSocket : DEFAULT_SOCKET);
    this.docker = opts.docker ?? new (loadDockerode())({ socketPath: this.socketPath });
    this.registryAuth = opts.registryAuth;
  }

  /**
   * Builds the image. A build that lost an image under it (see isBuildCacheRace) is built again after
   * a pause, and if that fails the same way (a long prune removes images one by one), once more
   * without the cache, which leaves only its own step images to lose; the output says so.
   */
  async build(req: BuildRequest): Promise<void> {
    let noCache = false;
    for (const retry of [...RETRIES_AFTER_LOST_IMAGE, null]) {
      try {
        return await this.buildOnce(req, noCache);
      } catch (err) {
        const lost = err instanceof PdciError && err.code === "build_failed" && isBuildCacheRace(err.message);
        if (!lost || retry === null || req.signal.aborted) throw err;
        req.output.write(`\n--- phab-dock-ci: ${retry.note}\n`);
        // A cancel ends the pause; the build then sees the aborted signal and stops at once.
        await delay(retry.pauseMs, undefined, { signal: req.signal }).catch(() => undefined);
        noCache = retry.noCache;
      }
    }
  }

  private async buildOnce(req: BuildRequest, noCache: boolean): Promise<void> {
    const cancelled = () => new PdciError("cancelled", "the build was cancelled");
    if (req.signal.aborted) throw cancelled();
    const context = req.context();
    let failure: string | null;
    try {
      const stream = await this.docker.buildImage(context, {
        t: req.tag,
        // Labels given to a build become an extra LABEL step (a container and a commit): skip when none.
        ...(Object.keys(req.labels).length > 0 ? { labels: req.labels } : {}),
        ...(noCache ? { nocache: true } : {}),
        rm: true,
        forcerm: true,
        abortSignal: req.signal,
      });
      failure = await followDockerProgress(this.docker, stream, req.output);
    } catch (err) {
      if (req.signal.aborted) throw cancelled();
      const message = `the build did not complete: ${errorMessage(err)}`;
      req.output.write(`error: ${message}\n`);
      throw new PdciError("build_failed", message, { cause: err });
    } finally {
      // A build that stopped early leaves the context unread; its producer (git archive) must not wait.
      destroyStream(context);
    }
    // An aborted request may end the event stream quietly, without an error event.
    if (req.signal.aborted) throw cancelled();
    if (failure !== null) throw new PdciError("build_failed", failure);
  }

  run(req: RunRequest): Promise<RunOutcome> {
    return runContainer(this.docker, req);
  }

  async removeImage(tag: string): Promise<void> {
    try {
      // The image's parents are the build cache, possibly in use by a build running right now.
      await this.docker.getImage(tag).remove({ force: true, noprune: true });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
  }

  async push(tag: string, output: Writable): Promise<void> {
    const { repo, tag: version } = splitTag(tag);
    let failure: string | null;
    try {
      const auth = this.registryAuth ? { authconfig: this.registryAuth } : {};
      const stream = await this.docker.getImage(repo).push({ tag: version, ...auth });
      failure = await followDockerProgress(this.docker, stream, output);
    } catch (err) {
      failure = errorMessage(err);
      output.write(`error: ${failure}\n`);
    }
    if (failure !== null) throw new PdciError("push_failed", `pushing ${tag} failed: ${failure}`);
  }

  async removeImagesOf(repository: string): Promise<number> {
    const found = await this.docker.listImages({ filters: { reference: [repository] } });
    let removed = 0;
    for (const info of found) {
      // By tag, never by id: the id may also carry tags that are not ours (a base image).
      for (const tag of info.RepoTags ?? []) {
        if (!tag.startsWith(`${repository}:`)) continue;
        await this.removeImage(tag);
        removed += 1;
      }
    }
    return removed;
  }

  async removeLeftovers(labels: Record<string, string>): Promise<number> {
    const filters = Object.entries(labels).map(([key, value]) => `${key}=${value}`);
    // Without a label the filter would match every container of the host.
    if (filters.length === 0) throw new PdciError("bad_input", "removeLeftovers needs at least one label");
    const found = await this.docker.listContainers({ all: true, filters: { label: filters } });
    let removed = 0;
    for (const info of found) {
      try {
        await this.docker.getContainer(info.Id).remove({ force: true });
        removed += 1;
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
      }
    }
    return removed;
  }

  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.docker.ping(), timeout]);
    } catch (err) {
      throw new PdciError(
        "docker_unavailable",
        `no Docker engine answers on ${this.socketPath} (${errorMessage(err)}): start it with ` +
          "`sudo systemctl start docker` (or run `dockerd &` as root), and make sure this user may use " +
          "the socket (member of the `docker` group)",
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
