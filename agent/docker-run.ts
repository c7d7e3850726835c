/**
 * One container run: create with limits and labels, attach before start so no output is lost, wait
 * for the exit while enforcing the timeout and the cancel signal, flush the output, remove.
 */
import type Dockerode from "dockerode";
import { PdciError, errorMessage } from "../protocol/errors.js";
import { CancelReason, type RunOutcome, type RunRequest } from "./container-backend.js";
import { pipeDemuxed } from "./docker-demux.js";

/** setTimeout fires at once for delays above this (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Destroys a stream typed without `destroy` (dockerode's attach stream, a caller's context). */
export function destroyStream(stream: unknown): void {
  if (stream !== null && typeof stream === "object" && "destroy" in stream) {
    const destroy = stream.destroy;
    if (typeof destroy === "function") destroy.call(stream);
  }
}

const REMOVE_ATTEMPTS = 5;
const REMOVE_RETRY_MS = 200;

export async function runContainer(docker: Dockerode, req: RunRequest): Promise<RunOutcome> {
  if (req.signal.aborted) return { exitCode: null, timedOut: false, cancelled: true, containerId: "" };
  let container: Dockerode.Container;
  try {
    container = await docker.createContainer({
      Image: req.image,
      Labels: req.labels,
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        Memory: req.limits.memoryBytes,
        NanoCpus: req.limits.nanoCpus,
        PidsLimit: req.limits.pidsLimit,
        Privileged: false,
        AutoRemove: false,
        // The output reaches the job log through the attach stream; a second copy in the engine's
        // log files would only fill the disk.
        LogConfig: { Type: "none", Config: {} },
      },
    });
  } catch (err) {
    throw new PdciError("run_failed", `could not create the container: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return await attachAndWait(container, req);
  } finally {
    await removeContainer(container);
  }
}

/** Removal can fail transiently (an unmount still busy); what stays is removed at the next start. */
async function removeContainer(container: Dockerode.Container): Promise<void> {
  for (let attempt = 0; attempt < REMOVE_ATTEMPTS; attempt++) {
    try {
      await container.remove({ force: true });
      return;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return;
      await new Promise((r) => setTimeout(r, REMOVE_RETRY_MS));
    }
  }
}

async function attachAndWait(container: Dockerode.Container, req: RunRequest): Promise<RunOutcome> {
  const attach = await container.attach({ stream: true, stdout: true, stderr: true });
  const flushed = pipeDemuxed(attach, req.output);
  flushed.catch(() => undefined); // observed below; this only keeps an early failure from going unhandled
  let timedOut = false;
  let cancelled = false;
  let stopping: Promise<void> | undefined;
  // `docker stop`: the stop signal (SIGTERM by default), then SIGKILL after the grace period.
  const stop = (graceMs: number): void => {
    stopping ??= container
      .stop({ t: Math.max(0, Math.ceil(graceMs / 1000)) })
      .catch(() => container.kill()) // the usual failure: it exited by itself in the meantime
      .then(
        () => undefined,
        () => undefined,
      );
  };
  const onAbort = (): void => {
    if (!timedOut) cancelled = true;
    const reason: unknown = req.signal.reason;
    stop(reason instanceof CancelReason ? reason.graceMs : req.graceMs);
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    try {
      await container.start();
    } catch (err) {
      throw new PdciError("run_failed", `could not start the container: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    timer = setTimeout(
      () => {
        if (!cancelled) timedOut = true;
        stop(req.graceMs);
      },
      Math.min(req.timeoutMs, MAX_TIMER_MS),
    );
    req.signal.addEventListener("abort", onAbort, { once: true });
    if (req.signal.aborted) onAbort();
    const exitCode = await container.wait().then(
      (result: { StatusCode?: unknown }) =>
        typeof result.StatusCode === "number" ? result.StatusCode : null,
      () => null,
    );
    clearTimeout(timer);
    await stopping;
    // The engine closes the attach stream after the exit, once everything the container wrote is sent.
    await flushed;
    return { exitCode, timedOut, cancelled, containerId: container.id };
  } finally {
    clearTimeout(timer);
    req.signal.removeEventListener("abort", onAbort);
    destroyStream(attach);
  }
}
