import assert from "node:assert/strict";
import { test } from "node:test";
import { fullJitterDelay } from "../protocol/backoff.js";
import { encodeLogFrame, parseLogFrame } from "../protocol/log-frame.js";
import { PROTOCOL_VERSION } from "../protocol/messages.js";
import { parseAgentMessage, parseCoordinatorMessage } from "../protocol/parse.js";
import { refProblem, repositoryUriProblem } from "../protocol/validate.js";

test("parses a valid hello", () => {
  const r = parseAgentMessage(
    JSON.stringify({
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      name: "a",
      labels: ["x"],
      capacity: 2,
      agentVersion: "1",
      running: [{ jobId: "3", ackedOffset: 10 }],
    }),
  );
  assert.ok(r.ok);
  if (r.ok) assert.equal(r.message.type, "hello");
});

const garbage: Array<[string, string]> = [
  ["not json", "{nope"],
  ["array", "[1,2]"],
  ["null", "null"],
  ["unknown type", '{"type":"rm -rf"}'],
  ["proto key", '{"type":"__proto__"}'],
  ["missing fields", '{"type":"job.log","jobId":"1"}'],
  ["job.log as text", '{"type":"job.log","jobId":"1","offset":1,"data":""}'],
  [
    "float capacity",
    '{"type":"hello","protocolVersion":1,"name":"a","labels":[],"capacity":1.5,"agentVersion":"","running":[]}',
  ],
  [
    "bad result",
    '{"type":"job.finished","jobId":"1","result":"maybe","exitCode":0,"reason":"","totalBytes":0,"sha256":"x"}',
  ],
];

for (const [name, frame] of garbage) {
  test(`refuses ${name} with a code and a message`, () => {
    const r = parseAgentMessage(frame);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.match(r.code, /^[a-z_]+$/);
      assert.ok(r.error.length > 0);
    }
  });
}

test("lists every problem of a message at once", () => {
  const r = parseCoordinatorMessage('{"type":"job.cancel","jobId":"","reason":5,"graceMs":-1}');
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.error.split(";").length, 3);
});

test("full jitter stays within [0, min(cap, base*2^n)]", () => {
  const opts = { baseMs: 100, capMs: 1000 };
  assert.equal(
    fullJitterDelay(0, opts, () => 0.999999),
    99,
  );
  assert.equal(
    fullJitterDelay(10, opts, () => 0.999999),
    999,
  );
  assert.equal(
    fullJitterDelay(3, opts, () => 0),
    0,
  );
});

test("validation accepts the URIs Phabricator hands out and refuses options", () => {
  for (const ok of [
    "https://phab.example.com/source/x.git",
    "ssh://git@phab:2222/diffusion/X/x.git",
    "git://h/x",
    "/var/repo/x.git",
  ]) {
    assert.equal(repositoryUriProblem(ok), null, ok);
  }
  for (const bad of [
    "-u",
    "--upload-pack=x",
    "ext::sh",
    "file:///x",
    "http://-oProxy/x",
    "/a/../b",
    "https://h/x y",
  ]) {
    assert.notEqual(repositoryUriProblem(bad), null, bad);
  }
  assert.equal(refProblem("refs/tags/phabricator/diff/12"), null);
  for (const bad of ["--upload-pack=x", "refs/../x", "refs/tags/x.lock", "refs/tags/a b", "HEAD"]) {
    assert.notEqual(refProblem(bad), null, bad);
  }
});

test("binary job.log frames round-trip raw bytes, and bad ones are refused", () => {
  const data = new Uint8Array([0, 255, 10, 13, 0x80, 1]);
  const frame = encodeLogFrame({ type: "job.log", jobId: "jöb-7", offset: 12, data });
  const r = parseLogFrame(frame);
  assert.ok(r.ok);
  if (r.ok) {
    assert.equal(r.message.jobId, "jöb-7");
    assert.equal(r.message.offset, 12);
    assert.deepEqual([...r.message.data], [...data]);
  }
  const broken: Array<[string, Uint8Array]> = [
    ["empty", new Uint8Array(0)],
    ["wrong kind", new Uint8Array([9, 0, 0, 0, 0])],
    ["header too long", new Uint8Array([1, 255, 255, 255, 255, 1])],
    ["header not json", new Uint8Array([1, 0, 0, 0, 2, 123, 123])],
    [
      "negative offset",
      encodeLogFrame({ type: "job.log", jobId: "1", offset: 0, data }).map((b, i) => (i === 0 ? 1 : b)),
    ],
  ];
  const neg = new TextEncoder().encode('{"jobId":"1","offset":-4}');
  broken[4] = ["negative offset", Uint8Array.from([1, 0, 0, 0, neg.length, ...neg])];
  for (const [name, bytes] of broken) {
    const p = parseLogFrame(bytes);
    assert.equal(p.ok, false, name);
    if (!p.ok) assert.equal(p.code, "bad_frame", name);
  }
});

test("a welcome without idleHeartbeatEvery (an older coordinator) means beating at every interval", () => {
  const welcome = {
    type: "welcome",
    protocolVersion: 2,
    heartbeatIntervalMs: 10_000,
    leaseMs: 30_000,
    offerTimeoutMs: 10_000,
    logFlushIntervalMs: 250,
    maxChunkBytes: 1024,
    maxLogBytes: 4096,
    resumed: [],
    cancel: [],
  };
  const old = parseCoordinatorMessage(JSON.stringify(welcome));
  assert.ok(old.ok && old.message.type === "welcome");
  assert.equal(old.message.idleHeartbeatEvery, 1);
  const now = parseCoordinatorMessage(JSON.stringify({ ...welcome, idleHeartbeatEvery: 3 }));
  assert.ok(now.ok && now.message.type === "welcome" && now.message.idleHeartbeatEvery === 3);
  const bad = parseCoordinatorMessage(JSON.stringify({ ...welcome, idleHeartbeatEvery: 0 }));
  assert.ok(!bad.ok && /idleHeartbeatEvery/.test(bad.error));
});
