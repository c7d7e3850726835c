import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import { gzipSync } from "node:zlib";
import {
  ConduitClient,
  ConduitError,
  isDuplicateArtifact,
  isAuthRefusal,
  isRetryable,
  redactSecret,
} from "../coordinator/conduit-client.js";
import { FakeConduit } from "./helpers/fake-conduit.js";

const TARGET = "PHID-HMBT-aaaaaaaaaaaaaaaaaaaa";
const BUILD = "PHID-HMBD-bbbbbbbbbbbbbbbbbbbb";

async function setup(t: TestContext, opts: { timeoutMs?: number; token?: string } = {}) {
  const fake = await FakeConduit.start();
  t.after(() => fake.close());
  const client = new ConduitClient({
    baseUrl: fake.url,
    token: opts.token ?? fake.token,
    timeoutMs: opts.timeoutMs ?? 5000,
  });
  t.after(() => client.close());
  return { fake, client };
}

/** The rejection of `p`, which must be a ConduitError that does not leak `token`. */
async function failure(p: Promise<unknown>, token: string): Promise<ConduitError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConduitError, `expected a ConduitError, got ${String(err)}`);
    assert.ok(!err.message.includes(token), `token leaked into: ${err.message}`);
    assert.ok(!String(err.stack).includes(token), "token leaked into the stack");
    if (err.cause instanceof Error)
      assert.ok(!err.cause.message.includes(token), "token leaked into the cause");
    return err;
  }
  return assert.fail("expected the call to fail");
}

void test("pass with unit and lint keeps JSON types and passes the target", async (t) => {
  const { fake, client } = await setup(t);
  fake.addTarget({ phid: TARGET, buildPHID: BUILD });
  const unit = [
    { name: "test_add", result: "pass", namespace: "tests.calc", duration: 0.012, path: "tests/calc.py" },
    { name: "test_sub", result: "fail", duration: 2, details: "1 != 2", format: "text" },
    { name: "test_cov", result: "pass", coverage: { "calc.py": "NCU" } },
  ];
  const lint = [
    { name: "Line too long", code: "E501", severity: "warning", path: "calc.py", line: 6, char: 80 },
  ];

  const result = await client.call("harbormaster.sendmessage", {
    receiver: TARGET,
    type: "pass",
    unit,
    lint,
  });

  assert.equal(result, null);
  const [sent] = fake.messages(TARGET);
  assert.deepEqual(sent, { receiver: TARGET, type: "pass", unit, lint });
  assert.equal(typeof (sent?.unit as Array<{ duration: unknown }>)[0]?.duration, "number");
  assert.equal(fake.target(TARGET)?.status, "target/passed");
  assert.equal(fake.buildStatus(BUILD), "passed");
  assert.deepEqual(fake.calls[0]?.params, { receiver: TARGET, type: "pass", unit, lint });
});

void test("a refused call is a ConduitError that is not retried", async (t) => {
  const { fake, client } = await setup(t);
  const unknown = await failure(
    client.call("harbormaster.sendmessage", { receiver: "PHID-HMBT-nosuchtargetxxxxxxxx", type: "pass" }),
    fake.token,
  );
  assert.equal(unknown.code, "conduit_refused");
  assert.equal(unknown.conduitCode, "ERR-CONDUIT-CORE");
  assert.match(unknown.message, /Unable to load object "PHID-HMBT-nosuchtargetxxxxxxxx" to receive message/);
  assert.equal(unknown.retryable, false);
  assert.equal(isRetryable(unknown), false);

  const noMethod = await failure(client.call("harbormaster.nosuchmethod", {}), fake.token);
  assert.equal(noMethod.conduitCode, "ERR-CONDUIT-CALL");
  assert.equal(isRetryable(noMethod), false);

  // Phorge checks typed unit fields even though it does not check result values.
  fake.addTarget({ phid: TARGET });
  const typed = await failure(
    client.call("harbormaster.sendmessage", {
      receiver: TARGET,
      type: "work",
      unit: [{ name: "t", result: "pass", duration: "0.5" }],
    }),
    fake.token,
  );
  assert.equal(
    typed.info,
    "Parameter 'duration' has invalid type. Expected type 'optional float|int', got type 'string'.",
  );
  assert.deepEqual(fake.messages(TARGET), []);
});

void test("a bad token is an auth refusal, not retried blindly, and never appears in the error", async (t) => {
  const badToken = `api-${"q".repeat(28)}`;
  const { fake, client } = await setup(t, { token: badToken });
  fake.addTarget({ phid: TARGET });

  const err = await failure(
    client.call("harbormaster.sendmessage", { receiver: TARGET, type: "pass" }),
    badToken,
  );
  assert.equal(err.code, "conduit_refused");
  assert.equal(err.conduitCode, "ERR-INVALID-AUTH");
  assert.equal(err.info, 'API token "api-[redacted]" is not valid.');
  assert.equal(isRetryable(err), false);
  assert.equal(isAuthRefusal(err), true);
  assert.equal(fake.target(TARGET)?.status, "target/waiting");

  // A token of the wrong shape is echoed too, and hidden as the configured secret.
  const shortClient = new ConduitClient({ baseUrl: fake.url, token: "api-short", timeoutMs: 5000 });
  t.after(() => shortClient.close());
  const short = await failure(shortClient.call("user.whoami", {}), "api-short");
  assert.equal(short.conduitCode, "ERR-INVALID-AUTH");
  assert.match(short.message, /wrong length/);
});

void test("duplicate artifact keys are recognised, other artifact errors are not", async (t) => {
  const { fake, client } = await setup(t);
  fake.addTarget({ phid: TARGET });
  const params = {
    buildTargetPHID: TARGET,
    artifactKey: "ci-build-link",
    artifactType: "uri",
    artifactData: { uri: "https://ci.example.test/job/1", name: "CI job #1", "ui.external": true },
  };

  const created = (await client.call("harbormaster.createartifact", params)) as {
    data: Array<{ phid: string }>;
  };
  assert.match(created.data[0]?.phid ?? "", /^PHID-HMBA-/);
  assert.deepEqual(fake.artifacts(TARGET), [
    {
      buildTargetPHID: TARGET,
      artifactKey: "ci-build-link",
      artifactType: "uri",
      artifactData: params.artifactData,
    },
  ]);

  const dup = await failure(client.call("harbormaster.createartifact", params), fake.token);
  assert.equal(dup.conduitCode, "ERR-CONDUIT-CORE");
  assert.match(dup.info ?? "", /^#1062: Duplicate entry 'uri-.{12}' for key 'key_artifact'$/);
  assert.equal(isDuplicateArtifact(dup), true);
  assert.equal(isRetryable(dup), false);

  const ftp = await failure(
    client.call("harbormaster.createartifact", {
      ...params,
      artifactKey: "other",
      artifactData: { uri: "ftp://ci.example.test/" },
    }),
    fake.token,
  );
  assert.match(ftp.info ?? "", /does not have an allowable protocol/);
  assert.equal(isDuplicateArtifact(ftp), false);
  assert.equal(isDuplicateArtifact(new Error("#1062: Duplicate entry for key 'key_artifact'")), false);
});

void test("HTTP 500, a hang and a reset are retryable transport errors", async (t) => {
  const { fake, client } = await setup(t, { timeoutMs: 300 });

  fake.failNext("500", 1);
  const e500 = await failure(client.call("user.whoami", {}), fake.token);
  assert.equal(e500.code, "conduit_transport");
  assert.match(e500.message, /HTTP 500/);
  assert.equal(isRetryable(e500), true);

  fake.failNext("hang", 1);
  const started = Date.now();
  const hang = await failure(client.call("user.whoami", {}), fake.token);
  assert.equal(hang.code, "conduit_transport");
  assert.match(hang.message, /no answer within 300 ms/);
  assert.ok(Date.now() - started < 3000, "the timeout bounds the call");
  assert.equal(isRetryable(hang), true);

  fake.failNext("reset", 1);
  const reset = await failure(client.call("user.whoami", {}), fake.token);
  assert.equal(reset.code, "conduit_transport");
  assert.equal(isRetryable(reset), true);

  // Failures were only the scripted ones; the next call goes through.
  const me = (await client.call("user.whoami", {})) as { userName: string };
  assert.equal(me.userName, "ci-bot");
});

void test("a refused connection is a retryable transport error", async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const token = `api-${"z".repeat(28)}`;
  const client = new ConduitClient({ baseUrl: `http://127.0.0.1:${port}`, token, timeoutMs: 2000 });
  t.after(() => client.close());

  const err = await failure(client.call("user.whoami", {}), token);
  assert.equal(err.code, "conduit_transport");
  assert.match(err.message, /ECONNREFUSED/);
  assert.equal(isRetryable(err), true);
  assert.equal(isAuthRefusal(err), false);
});

void test("target.search and build.search answer in Phorge's shape", async (t) => {
  const { fake, client } = await setup(t);
  fake.addTarget({ phid: TARGET, buildPHID: BUILD });
  const newTarget = fake.restartBuild(BUILD);

  const byBuild = (await client.call("harbormaster.target.search", {
    constraints: { buildPHIDs: [BUILD] },
  })) as { data: Array<{ phid: string; type: string; fields: Record<string, unknown> }>; cursor: unknown };
  // Every generation is returned, newest first.
  assert.deepEqual(
    byBuild.data.map((d) => [d.phid, d.fields.buildGeneration, d.fields.status]),
    [
      [newTarget, 2, { value: "target/waiting", name: "Waiting for Message" }],
      [TARGET, 1, { value: "target/waiting", name: "Waiting for Message" }],
    ],
  );
  assert.deepEqual(Object.keys(byBuild.data[0]?.fields ?? {}).sort(), [
    "buildGeneration",
    "buildPHID",
    "buildStepPHID",
    "dateCreated",
    "dateModified",
    "epochCompleted",
    "epochStarted",
    "name",
    "policy",
    "status",
  ]);
  assert.equal(byBuild.data[0]?.type, "HMBT");
  assert.deepEqual(byBuild.cursor, { limit: 100, after: null, before: null, order: null });

  const byPhid = (await client.call("harbormaster.target.search", {
    constraints: { phids: [TARGET] },
  })) as { data: Array<{ phid: string; fields: { buildPHID: string } }> };
  assert.deepEqual(
    byPhid.data.map((d) => [d.phid, d.fields.buildPHID]),
    [[TARGET, BUILD]],
  );

  fake.setBuildStatus(BUILD, "aborted");
  const builds = (await client.call("harbormaster.build.search", { constraints: { phids: [BUILD] } })) as {
    data: Array<{ phid: string; type: string; fields: { buildStatus: { value: string } } }>;
    maps: unknown;
    query: unknown;
  };
  assert.equal(builds.data.length, 1);
  assert.equal(builds.data[0]?.type, "HMBD");
  assert.equal(builds.data[0]?.fields.buildStatus.value, "aborted");
  assert.deepEqual(builds.maps, {});
  assert.deepEqual(builds.query, { queryKey: null });

  // An aborted build's target accepts a pass and ignores it, as Phorge does.
  assert.equal(await client.call("harbormaster.sendmessage", { receiver: newTarget, type: "pass" }), null);
  assert.equal(fake.target(newTarget)?.status, "target/waiting");
});

void test("the wire format: path prefix, params JSON with the token inside, gzip answers", async (t) => {
  const seen: Array<{ url: string; headers: IncomingMessage["headers"]; body: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (req.url === "/broken/api/conduit.ping") {
        res.writeHead(200, { "content-type": "text/html" });
        res.end("<html>maintenance</html>");
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(JSON.stringify({ result: { ok: 1.5 }, error_code: null, error_info: null })));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const token = `api-${"w".repeat(28)}`;

  for (const baseUrl of [`${base}/phorge`, `${base}/phorge/`]) {
    const client = new ConduitClient({ baseUrl, token, timeoutMs: 2000 });
    t.after(() => client.close());
    assert.deepEqual(await client.call("conduit.ping", { n: 1, flag: true }), { ok: 1.5 });
  }
  assert.deepEqual(
    seen.map((s) => s.url),
    ["/phorge/api/conduit.ping", "/phorge/api/conduit.ping"],
  );
  const first = seen[0];
  assert.ok(first);
  assert.equal(first.headers["content-type"], "application/x-www-form-urlencoded");
  assert.equal(first.headers["accept-encoding"], "gzip");
  const form = new URLSearchParams(first.body);
  assert.deepEqual([...form.keys()], ["params", "output", "__conduit__"]);
  assert.equal(form.get("output"), "json");
  assert.equal(form.get("__conduit__"), "1");
  assert.deepEqual(JSON.parse(form.get("params") ?? ""), { n: 1, flag: true, __conduit__: { token } });

  const broken = new ConduitClient({ baseUrl: `${base}/broken`, token, timeoutMs: 2000 });
  t.after(() => broken.close());
  const err = await failure(broken.call("conduit.ping", {}), token);
  assert.equal(err.code, "conduit_transport");
  assert.match(err.message, /not a Conduit response: <html>maintenance<\/html>/);
});

void test("the fake refuses what Phorge refuses: flat form strings, JSON bodies, missing tokens", async (t) => {
  const { fake } = await setup(t);
  fake.addTarget({ phid: TARGET });
  const post = async (body: string, contentType = "application/x-www-form-urlencoded") => {
    const res = await fetch(`${fake.url}/api/harbormaster.sendmessage`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    });
    assert.equal(res.status, 200);
    return (await res.json()) as { result: unknown; error_code: string | null; error_info: string | null };
  };

  const flat = await post(
    `api.token=${fake.token}&receiver=${TARGET}&type=fail&lint[0][name]=n&lint[0][code]=C` +
      "&lint[0][severity]=warning&lint[0][path]=x.py&lint[0][line]=6",
  );
  assert.equal(flat.error_code, "ERR-CONDUIT-CORE");
  assert.equal(
    flat.error_info,
    "Parameter 'line' has invalid type. Expected type 'optional int', got type 'string'.",
  );

  const legacy = await post(
    `api.token=${fake.token}&buildTargetPHID=${TARGET}&type=fail&unit[0][name]=a&unit[0][result]=fail`,
  );
  assert.equal(legacy.error_code, null);
  assert.deepEqual(fake.messages(TARGET), [
    { receiver: TARGET, type: "fail", unit: [{ name: "a", result: "fail" }] },
  ]);
  assert.equal(fake.target(TARGET)?.status, "target/failed");

  const both = await post(`api.token=${fake.token}&receiver=${TARGET}&buildTargetPHID=${TARGET}&type=pass`);
  assert.match(both.error_info ?? "", /^Call specifies both "receiver" and "buildTargetPHID"/);

  const json = await post(
    JSON.stringify({ "api.token": fake.token, receiver: TARGET, type: "pass" }),
    "application/json",
  );
  assert.equal(json.error_code, "ERR-CONDUIT-CORE");
  assert.match(json.error_info ?? "", /^Use form-encoded data/);

  // With `params`, a separate api.token is ignored.
  const split = await post(
    `params=${encodeURIComponent(JSON.stringify({ receiver: TARGET, type: "pass" }))}&api.token=${fake.token}`,
  );
  assert.deepEqual(
    [split.error_code, split.error_info],
    ["ERR-INVALID-SESSION", "Session key is not present."],
  );
});

void test("redactSecret hides the secret and anything token-shaped", () => {
  const secret = "api-abcdefghijklmnopqrstuvwxyz12";
  const other = "cli-zyxwvutsrqponmlkjihgfedcba98";
  assert.equal(
    redactSecret(`API token "${secret}" and ${other} and api-short`, secret),
    'API token "api-[redacted]" and api-[redacted] and api-short',
  );
  assert.equal(redactSecret("token xyz is bad", "xyz"), "token api-[redacted] is bad");
  assert.equal(redactSecret("nothing here", ""), "nothing here");
});
