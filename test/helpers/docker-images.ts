/**
 * Docker prerequisites of the integration tests: an engine that answers, and a tiny base image made
 * from the host's busybox, since tests must not depend on a registry.
 */
import { access, readFile } from "node:fs/promises";
import { Writable } from "node:stream";
import Dockerode from "dockerode";
import { DockerBackend } from "../../agent/docker-backend.js";
import { tarStream } from "./tar.js";

export const BASE_IMAGE = "pdci-busybox:latest";
const SOCKET = "/var/run/docker.sock";
const BUSYBOX_PATHS = ["/bin/busybox", "/usr/bin/busybox"];

/** Throws a clear error when no engine answers on the default socket. */
export async function requireDocker(docker = new Dockerode({ socketPath: SOCKET })): Promise<Dockerode> {
  try {
    await docker.ping();
  } catch {
    throw new Error(`no Docker engine answers on ${SOCKET}: start one with \`dockerd &\` (see .ci/run)`);
  }
  return docker;
}

async function findBusybox(): Promise<string> {
  for (const candidate of BUSYBOX_PATHS) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next place
    }
  }
  throw new Error(`the base image needs busybox on the host, at one of ${BUSYBOX_PATHS.join(", ")}`);
}

/** Returns the name of the base image, building it first when the engine lacks it. */
export async function ensureBaseImage(docker = new Dockerode({ socketPath: SOCKET })): Promise<string> {
  try {
    await docker.getImage(BASE_IMAGE).inspect();
    return BASE_IMAGE;
  } catch {
    // not there yet: build it below
  }
  const busybox = await readFile(await findBusybox());
  const dockerfile =
    'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n';
  const context = () =>
    tarStream([
      { name: "Dockerfile", data: dockerfile },
      { name: "busybox", data: busybox, mode: 0o755 },
    ]);
  let log = "";
  const output = new Writable({
    write(chunk: Buffer, _encoding, done) {
      log += chunk.toString();
      done();
    },
  });
  const backend = new DockerBackend({ docker });
  const signal = new AbortController().signal;
  try {
    await backend.build({ jobId: "base-image", context, tag: BASE_IMAGE, labels: {}, output, signal });
  } catch (err) {
    throw new Error(`building ${BASE_IMAGE} failed:\n${log}`, { cause: err });
  }
  return BASE_IMAGE;
}
