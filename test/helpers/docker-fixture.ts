/**
 * Per-test Docker setup: a backend, labels unique to the test, images tagged `pdci-test-…` that are
 * removed afterwards together with any container still carrying the test's labels.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import type Dockerode from "dockerode";
import type { RunRequest } from "../../agent/container-backend.js";
import { DockerBackend } from "../../agent/docker-backend.js";
import { BASE_IMAGE, ensureBaseImage, requireDocker } from "./docker-images.js";
import { Sink } from "./sink.js";
import { tarStream } from "./tar.js";

export interface DockerFixture {
  docker: Dockerode;
  backend: DockerBackend;
  labels: Record<string, string>;
  /** A fresh tag that is removed after the test. */
  newTag(): string;
  /** Builds an image FROM the base image with the given Dockerfile lines; returns its tag. */
  image(lines: string): Promise<string>;
  /** A run request with the test's labels and generous defaults. */
  runRequest(image: string, over?: Partial<RunRequest>): RunRequest & { output: Sink };
}

export async function dockerFixture(t: TestContext): Promise<DockerFixture> {
  const docker = await requireDocker();
  await ensureBaseImage(docker);
  const backend = new DockerBackend({ docker });
  const id = randomBytes(4).toString("hex");
  const labels = { "phab-dock-ci.job": `test-${id}`, "phab-dock-ci.agent": `pdci-test-${process.pid}` };
  const tags: string[] = [];
  t.after(async () => {
    await backend.removeLeftovers(labels);
    for (const tag of tags) await backend.removeImage(tag);
  });
  const newTag = (): string => {
    const tag = `pdci-test-${id}-${tags.length}:latest`;
    tags.push(tag);
    return tag;
  };
  const image = async (lines: string): Promise<string> => {
    const tag = newTag();
    const context = () => tarStream([{ name: "Dockerfile", data: `FROM ${BASE_IMAGE}\n${lines}\n` }]);
    const output = new Sink();
    const signal = new AbortController().signal;
    // Not the test's labels: containers inherit the labels of their image.
    const imageLabels = { "pdci-test.image": id };
    await backend.build({ jobId: id, context, tag, labels: imageLabels, output, signal });
    return tag;
  };
  const runRequest = (image: string, over: Partial<RunRequest> = {}): RunRequest & { output: Sink } => ({
    jobId: id,
    image,
    labels,
    limits: { memoryBytes: 256 * 1024 * 1024, nanoCpus: 1_000_000_000, pidsLimit: 64 },
    timeoutMs: 60_000,
    graceMs: 1000,
    signal: new AbortController().signal,
    ...over,
    output: over.output instanceof Sink ? over.output : new Sink(),
  });
  return { docker, backend, labels, newTag, image, runRequest };
}

/** Containers, running or not, that carry all of `labels`. */
export async function containersWith(docker: Dockerode, labels: Record<string, string>) {
  const filters = { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) };
  return docker.listContainers({ all: true, filters });
}
