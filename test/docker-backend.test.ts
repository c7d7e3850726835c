import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { DockerBackend, isBuildCacheRace, splitTag } from "../agent/docker-backend.js";
import { GitCheckout } from "../agent/git-checkout.js";
import { PdciError } from "../protocol/errors.js";
import { BASE_IMAGE } from "./helpers/docker-images.js";
import { containersWith, dockerFixture } from "./helpers/docker-fixture.js";
import { makeGitFixture } from "./helpers/git-fixture.js";
import { Sink } from "./helpers/sink.js";
import { tarStream } from "./helpers/tar.js";

function failsWith(code: string, pattern?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof PdciError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

const noSignal = () => new AbortController().signal;

test("builds an image from a crafted tar, with labels and the build output", async (t) => {
  const { docker, backend, labels, newTag } = await dockerFixture(t);
  const tag = newTag();
  const dockerfile = `FROM ${BASE_IMAGE}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n`;
  const context = () =>
    tarStream([
      { name: "Dockerfile", data: dockerfile },
      // Content of its own, so the RUN step is not answered from the build cache of an earlier run.
      { name: "hello.txt", data: `built-marker ${tag}\n` },
    ]);
  const output = new Sink();
  await backend.build({ jobId: "b1", context, tag, labels, output, signal: noSignal() });
  assert.match(output.text(), /built-marker/);
  const info = await docker.getImage(tag).inspect();
  for (const [key, value] of Object.entries(labels)) assert.equal(info.Config.Labels?.[key], value);
});

test("builds the archive of a checkout and runs it", async (t) => {
  const { backend, labels, newTag, runRequest } = await dockerFixture(t);
  const fixture = await makeGitFixture(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), "pdci-build-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const git = new GitCheckout({ cacheDir: path.join(dir, "cache") });
  const workspace = path.join(dir, "ws");
  const ref = "refs/tags/phabricator/diff/2";
  const { commit } = await git.checkout({
    jobId: "j",
    repositoryUri: fixture.origin,
    ref,
    commit: "",
    workspace,
    log: () => undefined,
  });
  const tag = newTag();
  const output = new Sink();
  const context = () => git.archive(workspace, commit);
  await backend.build({ jobId: "j", context, tag, labels, output, signal: noSignal() });
  const run = runRequest(tag);
  const outcome = await backend.run(run);
  assert.equal(outcome.exitCode, 0);
  assert.match(run.output.text(), /changed in diff 2/);
  assert.doesNotMatch(run.output.text(), /^\.git$/m);
});

test("a failing build step fails with build_failed and the reason in the output", async (t) => {
  const { backend, labels, newTag } = await dockerFixture(t);
  let contexts = 0;
  const context = () => {
    contexts += 1;
    return tarStream([{ name: "Dockerfile", data: `FROM ${BASE_IMAGE}\nRUN echo before; exit 3\n` }]);
  };
  const output = new Sink();
  const build = backend.build({ jobId: "b2", context, tag: newTag(), labels, output, signal: noSignal() });
  await assert.rejects(build, failsWith("build_failed", /returned a non-zero code: 3/));
  await build.catch((err: Error) => assert.equal(isBuildCacheRace(err.message), false));
  assert.equal(contexts, 1, "a build's own failure is not built again");
  assert.match(output.text(), /before/);
  assert.match(output.text(), /error: .*returned a non-zero code: 3/);
});

test("a Dockerfile naming a missing base image fails with build_failed", async (t) => {
  const { backend, labels, newTag } = await dockerFixture(t);
  const context = () => tarStream([{ name: "Dockerfile", data: "FROM pdci-test-missing-base:none\n" }]);
  const build = backend.build({
    jobId: "b3",
    context,
    tag: newTag(),
    labels,
    output: new Sink(),
    signal: noSignal(),
  });
  await assert.rejects(build, failsWith("build_failed"));
  // Not to be mistaken for a cache image removed meanwhile, which is built again.
  await build.catch((err: Error) => assert.equal(isBuildCacheRace(err.message), false, err.message));
});

test("a cache image removed during a build is told apart from the build's own failures", () => {
  // As the engine (API 1.41) failed a build whose cache lookup met an image removed beside it.
  const seen =
    'unable to find image "sha256:7748bd370b87fcb54f57adc6120cd76606ea930cc72918fe2f8252c8dafd0b17"';
  assert.equal(isBuildCacheRace(seen), true);
  assert.equal(isBuildCacheRace("No such image: sha256:7748bd370b87fcb54f57adc6120cd7"), true);
  assert.equal(isBuildCacheRace("unknown parent image ID sha256:7748bd370b87fcb54f57"), true);
  // A prune that removed the build's own step image before the next step.
  const own =
    "failed to get digest sha256:7d6dde1caefa871a5b5ba7e85ca6c688cdc200a41098d05a55d8f660b83b44dd: open " +
    "/var/lib/docker/image/overlay2/imagedb/content/sha256/7d6dde1caefa871a5b5ba7e85ca6c688cdc200a41098d05a55d8f660b83b44dd: " +
    "no such file or directory";
  assert.equal(isBuildCacheRace(own), true);
  for (const failure of [
    "No such image: pdci-test-missing-base:none",
    "No such image: app@sha256:7748bd370b87fcb54f57adc6120cd76606ea930cc72918fe2f8252c8dafd0b17",
    'unable to find image "app:latest" locally',
    "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
  ])
    assert.equal(isBuildCacheRace(failure), false, failure);
});

test("aborting a build rejects with cancelled", async (t) => {
  const { backend, labels, newTag } = await dockerFixture(t);
  const context = () =>
    tarStream([{ name: "Dockerfile", data: `FROM ${BASE_IMAGE}\nRUN echo building; sleep 30\n` }]);
  const output = new Sink();
  const controller = new AbortController();
  const started = Date.now();
  const build = backend.build({
    jobId: "b4",
    context,
    tag: newTag(),
    labels,
    output,
    signal: controller.signal,
  });
  await output.waitFor("building");
  controller.abort();
  await assert.rejects(build, failsWith("cancelled"));
  assert.ok(Date.now() - started < 20_000);
});

test("removeImage ignores a missing image", async (t) => {
  const { backend, image } = await dockerFixture(t);
  const tag = await image('CMD ["true"]');
  await backend.removeImage(tag);
  await backend.removeImage(tag);
});

test("two jobs building one tree get images of their own: removing one keeps the other and the cache", async (t) => {
  const { docker, backend, newTag, runRequest } = await dockerFixture(t);
  const files = [
    { name: "Dockerfile", data: `FROM ${BASE_IMAGE}\nCOPY run.sh /run.sh\nCMD ["sh", "/run.sh"]\n` },
    { name: "run.sh", data: `echo same-tree-${process.pid}-${Date.now()}\n` },
  ];
  const build = async (job: string) => {
    const tag = newTag();
    const output = new Sink();
    const labels = { "phab-dock-ci.job": job, "phab-dock-ci.agent": `pdci-test-${process.pid}` };
    await backend.build({
      jobId: job,
      context: () => tarStream(files),
      tag,
      labels,
      output,
      signal: noSignal(),
    });
    return { tag, output };
  };
  const first = await build("same-tree-1");
  const second = await build("same-tree-2");
  // The second build came from the cache of the first, yet ends in an image of its own.
  assert.match(second.output.text(), /Using cache/);
  const [a, b] = await Promise.all([
    docker.getImage(first.tag).inspect(),
    docker.getImage(second.tag).inspect(),
  ]);
  assert.notEqual(a.Id, b.Id);
  assert.equal(a.Parent, b.Parent);
  await backend.removeImage(first.tag);
  // The shared parent (build cache) survives the removal, and the second image still runs.
  await docker.getImage(b.Parent).inspect();
  const run = await backend.run(runRequest(second.tag));
  assert.equal(run.exitCode, 0);
});

test("a push that cannot reach the registry fails with push_failed", async (t) => {
  const { docker, backend, newTag } = await dockerFixture(t);
  const tag = newTag().replace(/^/, "127.0.0.1:9/");
  const { repo, tag: version } = splitTag(tag);
  await docker.getImage(BASE_IMAGE).tag({ repo, tag: version });
  const output = new Sink();
  await assert.rejects(backend.push(tag, output), failsWith("push_failed", /127\.0\.0\.1:9/));
  assert.match(output.text(), /error: /);
  await backend.removeImage(tag);
});

test("splitTag separates the tag from a registry port", () => {
  assert.deepEqual(splitTag("reg:5000/a/b:1.2"), { repo: "reg:5000/a/b", tag: "1.2" });
  assert.deepEqual(splitTag("reg:5000/a/b"), { repo: "reg:5000/a/b", tag: "latest" });
});

test("removeLeftovers removes running, created and exited containers with all the labels", async (t) => {
  const { docker, backend, labels, image } = await dockerFixture(t);
  const tag = await image('CMD ["sleep", "1000"]');
  const create = (extra: Record<string, string>, cmd?: string[]) =>
    docker.createContainer({ Image: tag, Labels: { ...labels, ...extra }, ...(cmd ? { Cmd: cmd } : {}) });
  await (await create({})).start();
  await create({});
  const exited = await create({}, ["true"]);
  await exited.start();
  await exited.wait();
  const partial = await docker.createContainer({
    Image: tag,
    Labels: { "phab-dock-ci.job": labels["phab-dock-ci.job"] ?? "" },
  });
  t.after(() => partial.remove({ force: true }));
  assert.equal(await backend.removeLeftovers(labels), 3);
  assert.deepEqual(await containersWith(docker, labels), []);
  await partial.inspect(); // a container with only some of the labels stays
  await assert.rejects(backend.removeLeftovers({}), failsWith("bad_input"));
});

test("ping explains how to start the engine when none answers", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "pdci-nodocker-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const backend = new DockerBackend({ socketPath: path.join(dir, "docker.sock") });
  await assert.rejects(backend.ping(), failsWith("docker_unavailable", /dockerd/));
  await new DockerBackend().ping();
});
