import assert from "node:assert/strict";
import { test } from "node:test";
import { PdciError } from "../protocol/errors.js";
import { containersWith, dockerFixture } from "./helpers/docker-fixture.js";
import { Sink } from "./helpers/sink.js";

const sh = (script: string) => `CMD ["sh", "-c", ${JSON.stringify(script)}]`;

test("a container that exits 0 passes, with its output and labels, and is removed", async (t) => {
  const { docker, backend, labels, image, runRequest } = await dockerFixture(t);
  const req = runRequest(await image(sh("echo run-marker; sleep 1")));
  const running = backend.run(req);
  await req.output.waitFor("run-marker");
  const during = await containersWith(docker, labels);
  assert.equal(during.length, 1);
  const outcome = await running;
  assert.deepEqual(outcome, { exitCode: 0, timedOut: false, cancelled: false, containerId: during[0]?.Id });
  assert.equal(req.output.text(), "run-marker\n");
  assert.equal(req.output.writableEnded, false, "the caller owns the output");
  assert.deepEqual(await containersWith(docker, labels), []);
});

test("exit 1 is reported, and stdout and stderr both arrive in order", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  const req = runRequest(
    await image(sh("echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; exit 1")),
  );
  const outcome = await backend.run(req);
  assert.equal(outcome.exitCode, 1);
  assert.equal(req.output.text(), "out1\nerr1\nout2\n");
});

test("large output arrives byte-exact", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  const req = runRequest(await image(sh("head -c 5000000 /dev/zero")), { output: new Sink({ keep: false }) });
  const outcome = await backend.run(req);
  assert.equal(outcome.exitCode, 0);
  assert.equal(req.output.bytes, 5_000_000);
});

test("a slow output holds the container back instead of buffering", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  const output = new Sink({ keep: false, delayMs: 1, highWaterMark: 16 * 1024 });
  const req = runRequest(await image(sh("head -c 20000000 /dev/zero; echo")), { output });
  const outcome = await backend.run(req);
  assert.equal(outcome.exitCode, 0);
  assert.equal(output.bytes, 20_000_001);
  assert.ok(output.maxBuffered < 512 * 1024, `up to ${output.maxBuffered} bytes waited in the output`);
});

test("a run past its timeout is stopped within the grace period", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  // `sleep` as PID 1 ignores SIGTERM, so only the SIGKILL after the grace ends it.
  const req = runRequest(await image('CMD ["sleep", "1000"]'), { timeoutMs: 500, graceMs: 1000 });
  const started = Date.now();
  const outcome = await backend.run(req);
  const elapsed = Date.now() - started;
  assert.equal(outcome.timedOut, true);
  assert.equal(outcome.cancelled, false);
  assert.equal(outcome.exitCode, 137);
  assert.ok(elapsed < 6000, `took ${elapsed} ms`);
});

test("aborting the signal cancels the run; a container handling SIGTERM ends early", async (t) => {
  const { docker, backend, labels, image, runRequest } = await dockerFixture(t);
  const controller = new AbortController();
  const script = "trap 'echo got-term; exit 0' TERM; echo started; sleep 1000 & wait";
  const req = runRequest(await image(sh(script)), { signal: controller.signal, graceMs: 20_000 });
  const started = Date.now();
  const running = backend.run(req);
  await req.output.waitFor("started");
  controller.abort();
  const outcome = await running;
  assert.equal(outcome.cancelled, true);
  assert.equal(outcome.timedOut, false);
  assert.equal(outcome.exitCode, 0);
  assert.match(req.output.text(), /got-term/);
  assert.ok(Date.now() - started < 10_000, "did not wait for the whole grace period");
  assert.deepEqual(await containersWith(docker, labels), []);
});

test("an already aborted signal runs nothing", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  const controller = new AbortController();
  controller.abort();
  const outcome = await backend.run(runRequest(await image(sh("echo no")), { signal: controller.signal }));
  assert.deepEqual(outcome, { exitCode: null, timedOut: false, cancelled: true, containerId: "" });
});

test("limits apply and the container is not privileged", async (t) => {
  const { backend, image, runRequest } = await dockerFixture(t);
  // cgroup v2 files first, then their v1 places.
  const script = [
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
    "grep CapEff /proc/self/status",
  ].join("; ");
  const req = runRequest(await image(sh(script)));
  const outcome = await backend.run(req);
  assert.equal(outcome.exitCode, 0);
  const [memory, pids, caps] = req.output.text().split("\n");
  assert.equal(memory, String(256 * 1024 * 1024));
  assert.equal(pids, "64");
  const effective = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(caps ?? "")?.[1] ?? "ffffffff"}`);
  const CAP_SYS_ADMIN = 21n;
  assert.equal((effective >> CAP_SYS_ADMIN) & 1n, 0n, `capabilities ${caps}`);
});

test("a missing image fails with run_failed", async (t) => {
  const { backend, runRequest } = await dockerFixture(t);
  await assert.rejects(backend.run(runRequest("pdci-test-no-such-image:none")), (err: unknown) => {
    assert.ok(err instanceof PdciError && err.code === "run_failed", String(err));
    return true;
  });
});
