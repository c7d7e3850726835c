import { createHash, randomInt } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gzipSync } from "node:zlib";

/**
 * A fake Phorge Conduit endpoint for tests. Its answers, error codes and error texts follow
 * recorded exchanges with a real Phorge; where Phorge's behaviour is surprising the comment says so.
 * Effects that Phorge applies later in a daemon (a `pass` passing the target) happen at once here.
 */

export interface ConduitCall {
  method: string;
  params: Record<string, unknown>;
  at: number;
}

export interface FakeTarget {
  phid: string;
  buildPHID: string;
  buildGeneration: number;
  /** "target/waiting" | "target/passed" | "target/failed" | "target/building" | ... */
  status: string;
}

export interface FakeMessage {
  receiver: string;
  type: string;
  unit?: unknown;
  lint?: unknown;
}

export interface FakeArtifact {
  buildTargetPHID: string;
  artifactKey: string;
  artifactType: string;
  artifactData: Record<string, unknown>;
}

/** "applied-hang": the call takes effect, but the answer never comes (a timeout after success). */
type FailMode = "500" | "hang" | "reset" | "applied-hang";
type Params = Record<string, unknown>;

interface TargetState extends FakeTarget {
  id: number;
  created: number;
  modified: number;
  completed: number | null;
}

interface BuildState {
  phid: string;
  id: number;
  status: string;
  generation: number;
  created: number;
  modified: number;
}

interface StoredMessage extends FakeMessage {
  consumed: boolean;
}

/** A refusal with a Conduit error code; anything else thrown becomes ERR-CONDUIT-CORE, like PHP. */
class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const core = (message: string): Refusal => new Refusal("ERR-CONDUIT-CORE", message);

const TARGET_STATUS_NAMES: Record<string, string> = {
  "target/pending": "Pending",
  "target/building": "Building",
  "target/waiting": "Waiting for Message",
  "target/passed": "Passed",
  "target/failed": "Failed",
  "target/aborted": "Aborted",
};

// Names and colours seen on a real Phorge; the statuses never recorded get a name only.
const BUILD_STATUSES: Record<string, { name: string; "color.ansi"?: string }> = {
  building: { name: "Building", "color.ansi": "yellow" },
  passed: { name: "Passed", "color.ansi": "green" },
  failed: { name: "Failed", "color.ansi": "red" },
  pending: { name: "Pending" },
  paused: { name: "Paused" },
  aborted: { name: "Aborted" },
};
const BUILD_DONE = new Set(["passed", "failed", "aborted", "error", "deadlocked"]);

// PhutilTypeSpec-like field specs; "optional" fields may be absent or null.
const UNIT_SPEC: Record<string, string> = {
  name: "string",
  result: "string",
  namespace: "optional string",
  engine: "optional string",
  duration: "optional float|int",
  path: "optional string",
  coverage: "optional map<string, string>",
  details: "optional string",
  format: "optional string",
};
const LINT_SPEC: Record<string, string> = {
  name: "string",
  code: "string",
  severity: "string",
  path: "string",
  line: "optional int",
  char: "optional int",
  description: "optional string",
};
const URI_ARTIFACT_SPEC: Record<string, string> = {
  uri: "string",
  name: "optional string",
  "ui.external": "optional bool",
};
const ARTIFACT_TYPES = new Set(["file", "host", "uri", "working-copy", "drydock-lease"]);
const SEARCH_PARAMS = ["queryKey", "constraints", "attachments", "order", "before", "after", "limit"];

const now = (): number => Math.floor(Date.now() / 1000);

function randomChars(n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = "";
  for (let i = 0; i < n; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

const newPhid = (type: string): string => `PHID-${type}-${randomChars(20)}`;

function isMap(v: unknown): v is Params {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The type name PHP would report for a decoded value. */
function phpType(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "string") return "string";
  return Array.isArray(v) ? "list" : "map";
}

function matchesType(v: unknown, type: string): boolean {
  switch (type) {
    case "string":
      return typeof v === "string";
    case "int":
      return typeof v === "number" && Number.isInteger(v);
    case "float|int":
      return typeof v === "number";
    case "bool":
      return typeof v === "boolean";
    case "map<string, string>":
      return isMap(v) && Object.values(v).every((x) => typeof x === "string");
    default:
      return false;
  }
}

/** PhutilTypeSpec::checkMap as Phorge applies it to unit/lint entries and artifact data. */
function checkFields(entry: Params, spec: Record<string, string>): void {
  const missing = Object.keys(spec).filter((k) => !spec[k]?.startsWith("optional ") && !(k in entry));
  if (missing.length > 0)
    throw new Refusal("ERR-CONDUIT-CALL", `Missing required parameters: ${missing.join(", ")}`);
  for (const [key, typeText] of Object.entries(spec)) {
    if (!(key in entry)) continue;
    const optional = typeText.startsWith("optional ");
    const value = entry[key];
    if (optional && value === null) continue;
    if (!matchesType(value, optional ? typeText.slice(9) : typeText)) {
      throw core(
        `Parameter '${key}' has invalid type. Expected type '${typeText}', got type '${phpType(value)}'.`,
      );
    }
  }
}

/** What PHP's foreach accepts; a scalar gets PHP's own error text back (fixture err-25). */
function foreachable(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  if (isMap(v)) return Object.values(v);
  throw core(`foreach() argument must be of type array|object, ${phpType(v)} given`);
}

/** Objects whose keys are exactly 0..n-1 become lists, as PHP arrays from `a[0]=..&a[1]=..` behave. */
function listify(v: unknown): unknown {
  if (!isMap(v)) return v;
  const keys = Object.keys(v);
  const out: Params = {};
  for (const k of keys) out[k] = listify(v[k]);
  return keys.length > 0 && keys.every((k, i) => k === String(i)) ? Object.values(out) : out;
}

/** Decode a form body PHP-style: `unit[0][name]=x` nests; every value is a string. Dots are kept. */
function parseForm(text: string): Params {
  const root: Params = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const m = /^([^[\]]+)((?:\[[^\]]*\])+)$/.exec(rawKey);
    const path =
      m?.[1] !== undefined
        ? [m[1], ...[...(m[2] ?? "").matchAll(/\[([^\]]*)\]/g)].map((x) => x[1] ?? "")]
        : [rawKey];
    let node = root;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i] === "" ? String(Object.keys(node).length) : (path[i] ?? "");
      if (i === path.length - 1) {
        node[seg] = value;
      } else {
        const next = node[seg];
        node = isMap(next) ? next : (node[seg] = {});
      }
    }
  }
  return listify(root) as Params;
}

interface Decoded {
  params: Params;
  token: string | null;
  strict: boolean;
}

/** Split Conduit's metadata (the token) from the call's own parameters. */
function typed(all: unknown, method: string): Decoded {
  if (!isMap(all)) throw core(`Invalid parameter information was passed to method "${method}".`);
  const { __conduit__: meta, ...params } = all;
  const token = isMap(meta) && typeof meta.token === "string" ? meta.token : null;
  return { params, token, strict: true };
}

function parseJson(text: string, method: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw core(`Invalid parameter information was passed to method "${method}".`);
  }
}

/**
 * Conduit's three encodings: `params=<JSON>` (typed, token in `__conduit__`), the web console's
 * `params[key]=<JSON>`, and flat fields (`api.token=…&type=pass`, every value a string). With
 * `params`, a separate `api.token` is ignored (fixture err-30).
 */
function decodeRequest(method: string, fields: Params): Decoded {
  const p = fields.params;
  if (typeof p === "string" && p !== "") return typed(parseJson(p, method), method);
  if (isMap(p) || Array.isArray(p)) {
    const entries = Object.entries(p).map(([k, v]) => [k, v === "" ? v : parseJson(String(v), method)]);
    return typed(Object.fromEntries(entries), method);
  }
  const params: Params = {};
  let token: string | null = null;
  for (const [k, v] of Object.entries(fields)) {
    if (k === "api.token") token = typeof v === "string" ? v : null;
    else if (!k.startsWith("api.") && k !== "__conduit__" && k !== "output") params[k] = v;
  }
  return { params, token, strict: false };
}

/** One result page in the shape every `*.search` method returns. */
function page(data: unknown[], limit: number): unknown {
  return {
    data: data.slice(0, limit),
    maps: {},
    query: { queryKey: null },
    cursor: { limit, after: null, before: null, order: null },
  };
}

/** A search constraint as a list of strings; absent or empty means "no constraint" (unverified for []). */
function constraint(constraints: Params, key: string): string[] | null {
  const v = constraints[key];
  if (v === undefined || v === null) return null;
  const list = Array.isArray(v) ? v : isMap(v) ? Object.values(v) : [v];
  return list.length === 0 ? null : list.map((x) => String(x));
}

function searchLimit(params: Params): number {
  const n = Number(params.limit ?? 100);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 100) : 100;
}

interface MethodDef {
  params: string[];
  run: (params: Params, strict: boolean) => unknown;
}

export class FakeConduit {
  readonly url: string;
  readonly token: string;
  calls: ConduitCall[] = [];

  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly failures: Array<{ mode: FailMode; method: string | undefined }> = [];
  private readonly targets = new Map<string, TargetState>();
  private readonly builds = new Map<string, BuildState>();
  private readonly stored: StoredMessage[] = [];
  private readonly storedArtifacts: FakeArtifact[] = [];
  private readonly artifactIndex = new Set<string>();
  private readonly stepPHID = newPhid("HMCS");
  private nextTargetId = 1;
  private nextBuildId = 1;
  private closed = false;

  private readonly methods: Record<string, MethodDef> = {
    "harbormaster.sendmessage": {
      params: ["receiver", "buildTargetPHID", "type", "unit", "lint"],
      run: (p) => this.sendMessage(p),
    },
    "harbormaster.createartifact": {
      params: ["buildTargetPHID", "artifactKey", "artifactType", "artifactData"],
      run: (p, strict) => this.createArtifact(p, strict),
    },
    "harbormaster.target.search": { params: SEARCH_PARAMS, run: (p) => this.searchTargets(p) },
    "harbormaster.build.search": { params: SEARCH_PARAMS, run: (p) => this.searchBuilds(p) },
    "user.whoami": {
      params: [],
      run: () => ({
        phid: "PHID-USER-fakecibotxxxxxxxxxxx",
        userName: "ci-bot",
        realName: "CI Bot",
        roles: ["agent", "verified", "approved", "activated"],
      }),
    },
  };

  private constructor(server: Server, url: string, token: string) {
    this.server = server;
    this.url = url;
    this.token = token;
  }

  static async start(opts: { token?: string } = {}): Promise<FakeConduit> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const fake = new FakeConduit(server, `http://127.0.0.1:${port}`, opts.token ?? `api-${randomChars(28)}`);
    server.on("connection", (s: Socket) => {
      fake.sockets.add(s);
      s.on("close", () => fake.sockets.delete(s));
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      fake.handle(req, res).catch((err: unknown) => {
        // A bug in the fake: make it loud in the test rather than a silent hang.
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(`fake-conduit internal error: ${String(err)}`);
      });
    });
    return fake;
  }

  // ---- inspection and scripting for tests ----

  messages(target?: string): FakeMessage[] {
    return this.stored
      .filter((m) => target === undefined || m.receiver === target)
      .map(({ receiver, type, unit, lint }) => ({
        receiver,
        type,
        ...(unit !== undefined ? { unit } : {}),
        ...(lint !== undefined ? { lint } : {}),
      }));
  }

  artifacts(target?: string): FakeArtifact[] {
    return this.storedArtifacts.filter((a) => target === undefined || a.buildTargetPHID === target);
  }

  target(phid: string): FakeTarget | undefined {
    const t = this.targets.get(phid);
    return (
      t && { phid: t.phid, buildPHID: t.buildPHID, buildGeneration: t.buildGeneration, status: t.status }
    );
  }

  buildStatus(buildPHID: string): string | undefined {
    return this.builds.get(buildPHID)?.status;
  }

  addTarget(t: Partial<FakeTarget> & { phid: string }): void {
    if (this.targets.has(t.phid)) throw new Error(`fake-conduit: target ${t.phid} already exists`);
    const build = this.ensureBuild(t.buildPHID ?? newPhid("HMBD"));
    const generation = t.buildGeneration ?? build.generation;
    build.generation = Math.max(build.generation, generation);
    const ts = now();
    this.targets.set(t.phid, {
      phid: t.phid,
      buildPHID: build.phid,
      buildGeneration: generation,
      status: t.status ?? "target/waiting",
      id: this.nextTargetId++,
      created: ts,
      modified: ts,
      completed: null,
    });
    this.settle();
  }

  setBuildStatus(buildPHID: string, status: string): void {
    const build = this.mustBuild(buildPHID);
    build.status = status;
    build.modified = now();
    this.settle();
  }

  /** Like a restart: same build, next generation, a new waiting target; old targets stay as they were. */
  restartBuild(buildPHID: string): string {
    const build = this.mustBuild(buildPHID);
    build.generation += 1;
    build.status = "building";
    build.modified = now();
    const phid = newPhid("HMBT");
    this.addTarget({ phid, buildPHID, buildGeneration: build.generation, status: "target/waiting" });
    return phid;
  }

  /** The next `count` requests (of `method` only, when given) fail in `mode`. */
  failNext(mode: FailMode, count: number, method?: string): void {
    for (let i = 0; i < count; i++) this.failures.push({ mode, method });
  }

  async waitFor(pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() >= deadline) {
        const recent = this.calls.slice(-5).map((c) => c.method);
        throw new Error(
          `fake-conduit waitFor: condition not met within ${timeoutMs} ms ` +
            `(${this.calls.length} calls, last: ${recent.join(", ") || "none"})`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Hanging requests keep their sockets open; destroy them so close() returns.
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const url = new URL(req.url ?? "/", "http://fake.invalid");
    const m = /^\/api\/([^/]+)$/.exec(url.pathname);
    const method = m?.[1] === undefined ? undefined : decodeURIComponent(m[1]);
    const index = this.failures.findIndex((f) => f.method === undefined || f.method === method);
    const failure = index < 0 ? undefined : this.failures.splice(index, 1)[0]?.mode;
    if (failure === "hang") return; // never answered; close() destroys the socket
    if (failure === "reset") {
      req.socket.destroy();
      return;
    }
    if (failure === "500") {
      res.writeHead(500, { "content-type": "text/html" });
      res.end("<html><body><h1>500 Internal Server Error</h1></body></html>");
      return;
    }
    if (method === undefined) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("Not Found");
      return;
    }
    const envelope = this.conduit(method, req.headers["content-type"], url.search, body);
    if (failure === "applied-hang") return;
    // PHP's json_encode escapes "/" (`target\/waiting`); "/" occurs only inside JSON strings.
    const json = JSON.stringify(envelope).replace(/\//g, "\\/");
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-conduit-capabilities": "gzip",
      "cache-control": "no-store",
    };
    let out: Buffer = Buffer.from(json, "utf8");
    if (/\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""))) {
      out = gzipSync(out);
      headers["content-encoding"] = "gzip";
      headers.vary = "Accept-Encoding";
    }
    res.writeHead(200, headers);
    res.end(out);
  }

  /** Phorge's order: method exists, body decodes, no undeclared parameters, token, then the call. */
  private conduit(method: string, contentType: string | undefined, query: string, body: string): unknown {
    let params: Params = {};
    try {
      const def = this.methods[method];
      if (def === undefined)
        throw new Refusal("ERR-CONDUIT-CALL", `Conduit API method "${method}" does not exist.`);
      // Only the exact header value is refused; "application/json; charset=utf-8" falls through and
      // the JSON text becomes one form key (fixture err-11b).
      if (contentType === "application/json") {
        throw core(
          "Use form-encoded data to submit parameters to Conduit endpoints. Sending a JSON-encoded body " +
            "and setting 'Content-Type': 'application/json' is not currently supported.",
        );
      }
      const decoded = decodeRequest(method, parseForm(`${query.replace(/^\?/, "")}&${body}`));
      params = decoded.params;
      const unknown = Object.keys(params).filter((k) => !def.params.includes(k));
      if (unknown.length > 0) {
        const list = unknown.map((k) => `'${k}'`).join(", ");
        throw new Refusal(
          "ERR-CONDUIT-CALL",
          `API Method "${method}" does not define these parameters: ${list}.`,
        );
      }
      this.authenticate(decoded.token);
      return { result: def.run(params, decoded.strict) ?? null, error_code: null, error_info: null };
    } catch (err) {
      const code = err instanceof Refusal ? err.code : "ERR-CONDUIT-CORE";
      return { result: null, error_code: code, error_info: err instanceof Error ? err.message : String(err) };
    } finally {
      this.calls.push({ method, params, at: Date.now() });
    }
  }

  /** Phorge's token checks, in its order; note that the refusals echo the token verbatim. */
  private authenticate(token: string | null): void {
    if (token === null || token === "")
      throw new Refusal("ERR-INVALID-SESSION", "Session key is not present.");
    const auth = (msg: string): Refusal => new Refusal("ERR-INVALID-AUTH", `API token "${token}" ${msg}`);
    if (token.length !== 32) throw auth("has the wrong length. API tokens should be 32 characters long.");
    if (!/^(api|cli|clr)-/.test(token)) {
      throw auth(
        "has the wrong format. API tokens should be 32 characters long and begin with one of these prefixes: api, cli, clr.",
      );
    }
    if (token !== this.token) throw auth("is not valid.");
  }

  // ---- methods ----

  private sendMessage(p: Params): null {
    let receiver = p.receiver;
    if (p.buildTargetPHID !== undefined && p.buildTargetPHID !== null) {
      if (receiver !== undefined && receiver !== null) {
        throw core(
          'Call specifies both "receiver" and "buildTargetPHID". When using the modern "receiver" ' +
            'parameter, omit the deprecated "buildTargetPHID" parameter.',
        );
      }
      receiver = p.buildTargetPHID;
    }
    if (receiver === undefined || receiver === null || receiver === "") {
      throw core(
        'Call omits required "receiver" parameter. Specify the PHID of the object you want to send a message to.',
      );
    }
    if (p.type === undefined || p.type === null || p.type === "") {
      throw core('Call omits required "type" parameter. Specify the type of message you want to send.');
    }
    const rid = String(receiver);
    const type = String(p.type);
    const target = this.targets.get(rid);
    if (target) {
      // Lint before unit, as Phorge does; nothing is stored unless every entry is valid.
      for (const e of foreachable(p.lint)) checkFields(this.entry(e, "Lint"), LINT_SPEC);
      for (const e of foreachable(p.unit)) checkFields(this.entry(e, "Unit"), UNIT_SPEC);
      // Any type is accepted for a target (even "bogus" or "abort"); only pass/fail have an effect.
      this.storeMessage(rid, type, p.unit, p.lint);
      this.settle();
      return null;
    }
    const build = this.builds.get(rid);
    if (!build) throw core(`Unable to load object "${rid}" to receive message.`);
    for (const key of ["unit", "lint"]) {
      if (p[key] !== undefined && p[key] !== null) {
        throw core(
          `Call includes "${key}" parameter. This parameter must be omitted when the receiver is not a Build Target.`,
        );
      }
    }
    this.commandBuild(build, type);
    this.storeMessage(rid, type, undefined, undefined);
    return null;
  }

  private entry(e: unknown, kind: string): Params {
    if (isMap(e)) return e;
    throw core(
      `HarbormasterBuild${kind}Message::newFromDictionary(): Argument #2 ($dict) must be of type array, ${phpType(e)} given`,
    );
  }

  private storeMessage(receiver: string, type: string, unit: unknown, lint: unknown): void {
    this.stored.push({
      receiver,
      type,
      consumed: false,
      ...(unit !== undefined && unit !== null ? { unit } : {}),
      ...(lint !== undefined && lint !== null ? { lint } : {}),
    });
  }

  private commandBuild(build: BuildState, type: string): void {
    const done = BUILD_DONE.has(build.status);
    switch (type) {
      case "restart":
        this.restartBuild(build.phid);
        return;
      case "abort":
        if (done)
          throw core("Unable to Abort Build: You can not abort this build because it is already complete.");
        this.setBuildStatus(build.phid, "aborted");
        return;
      case "pause":
        if (build.status === "paused") {
          throw core("Unable to Pause Build: You can not pause this build because it is already paused.");
        }
        if (done)
          throw core("Unable to Pause Build: You can not pause this build because it is already complete.");
        this.setBuildStatus(build.phid, "paused");
        return;
      case "resume":
        if (build.status !== "paused") {
          throw core(
            "Unable to Resume Build: You can not resume this build because it is not paused. You can only resume a paused build.",
          );
        }
        this.setBuildStatus(build.phid, "building");
        return;
      default:
        throw core(`Message type "${type}" is not supported.`);
    }
  }

  private createArtifact(p: Params, strict: boolean): unknown {
    const targetPHID = String(p.buildTargetPHID ?? "");
    const target = this.targets.get(targetPHID);
    if (!target) throw core(`No such build target "${targetPHID}"!`);
    const type = String(p.artifactType ?? "");
    if (!ARTIFACT_TYPES.has(type))
      throw core(`There is no implementation available for artifacts of type "${type}".`);
    const data: Params = isMap(p.artifactData) ? { ...p.artifactData } : {};
    if (type === "uri") {
      // Form-encoded calls are cast PHP-style, so "false" is true and only "0" or "" are false (art-07, art-08).
      const ext = data["ui.external"];
      if (!strict && typeof ext === "string") data["ui.external"] = ext !== "" && ext !== "0";
      const extra = Object.keys(data).filter((k) => !(k in URI_ARTIFACT_SPEC));
      // Not recorded against a real Phorge; PhutilTypeSpec's wording.
      if (extra.length > 0)
        throw new Refusal("ERR-CONDUIT-CALL", `Got unexpected parameters: ${extra.join(", ")}`);
      checkFields(data, URI_ARTIFACT_SPEC);
      checkLinkUri(String(data.uri));
    }
    const key = String(p.artifactKey ?? "");
    // The unique key is (target, type, digest of target+key); Phorge surfaces the raw MySQL error.
    const digest = createHash("sha1").update(`${targetPHID}${key}`).digest("base64");
    const index = digest.replace(/\+/g, ".").replace(/\//g, "_").slice(0, 12);
    if (this.artifactIndex.has(`${targetPHID} ${type} ${index}`)) {
      throw core(`#1062: Duplicate entry '${type}-${index}' for key 'key_artifact'`);
    }
    this.artifactIndex.add(`${targetPHID} ${type} ${index}`);
    this.storedArtifacts.push({
      buildTargetPHID: targetPHID,
      artifactKey: key,
      artifactType: type,
      artifactData: data,
    });
    return { data: [{ phid: newPhid("HMBA") }] };
  }

  private searchTargets(p: Params): unknown {
    const c = isMap(p.constraints) ? p.constraints : {};
    const ids = constraint(c, "ids");
    const phids = constraint(c, "phids");
    const builds = constraint(c, "buildPHIDs");
    const found = [...this.targets.values()]
      .filter((t) => !ids || ids.includes(String(t.id)))
      .filter((t) => !phids || phids.includes(t.phid))
      .filter((t) => !builds || builds.includes(t.buildPHID))
      .sort((a, b) => b.id - a.id)
      .map((t) => ({
        id: t.id,
        type: "HMBT",
        phid: t.phid,
        fields: {
          name: "Notify external CI",
          buildPHID: t.buildPHID,
          buildStepPHID: this.stepPHID,
          status: { value: t.status, name: TARGET_STATUS_NAMES[t.status] ?? t.status },
          epochStarted: t.created,
          epochCompleted: t.completed,
          buildGeneration: t.buildGeneration,
          dateCreated: t.created,
          dateModified: t.modified,
          policy: { view: "users" },
        },
        attachments: {},
      }));
    return page(found, searchLimit(p));
  }

  private searchBuilds(p: Params): unknown {
    const c = isMap(p.constraints) ? p.constraints : {};
    const ids = constraint(c, "ids");
    const phids = constraint(c, "phids");
    const statuses = constraint(c, "statuses");
    const found = [...this.builds.values()]
      .filter((b) => !ids || ids.includes(String(b.id)))
      .filter((b) => !phids || phids.includes(b.phid))
      .filter((b) => !statuses || statuses.includes(b.status))
      .sort((a, b) => b.id - a.id)
      .map((b) => ({
        id: b.id,
        type: "HMBD",
        phid: b.phid,
        fields: {
          buildablePHID: `PHID-HMBB-fakebuildable${String(b.id).padStart(7, "0")}`,
          buildPlanPHID: "PHID-HMCP-fakeplanxxxxxxxxxxx",
          buildStatus: { value: b.status, ...(BUILD_STATUSES[b.status] ?? { name: b.status }) },
          initiatorPHID: "PHID-APPS-PhabricatorHarbormasterApplication",
          name: "External CI (HTTP hook)",
          dateCreated: b.created,
          dateModified: b.modified,
          policy: { view: "users", edit: "users" },
        },
        attachments: {},
      }));
    return page(found, searchLimit(p));
  }

  // ---- state ----

  private ensureBuild(phid: string): BuildState {
    let build = this.builds.get(phid);
    if (!build) {
      const ts = now();
      build = { phid, id: this.nextBuildId++, status: "building", generation: 1, created: ts, modified: ts };
      this.builds.set(phid, build);
    }
    return build;
  }

  private mustBuild(phid: string): BuildState {
    const build = this.builds.get(phid);
    if (!build) throw new Error(`fake-conduit: no build ${phid}`);
    return build;
  }

  /**
   * What Phorge's build engine does with stored messages: only while the build is running, only
   * for current-generation targets still waiting. Everything else stays unconsumed forever, which
   * is why a pass to a finished, aborted or restarted-away target "succeeds" and changes nothing.
   */
  private settle(): void {
    for (const build of this.builds.values()) {
      if (build.status !== "building") continue;
      const current = [...this.targets.values()].filter(
        (t) => t.buildPHID === build.phid && t.buildGeneration === build.generation,
      );
      for (const t of current) {
        if (t.status !== "target/waiting") continue;
        const msg = this.stored.find(
          (m) => m.receiver === t.phid && !m.consumed && (m.type === "pass" || m.type === "fail"),
        );
        if (!msg) continue;
        msg.consumed = true;
        t.status = msg.type === "pass" ? "target/passed" : "target/failed";
        t.modified = t.completed = now();
      }
      if (current.some((t) => t.status === "target/failed")) build.status = "failed";
      else if (current.length > 0 && current.every((t) => t.status === "target/passed"))
        build.status = "passed";
      if (build.status !== "building") build.modified = now();
    }
  }
}

function checkLinkUri(uri: string): void {
  const proto = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
  if (proto === undefined) {
    throw core(
      `Unable to identify the protocol for URI "${uri}". URIs must be fully qualified and have an identifiable protocol.`,
    );
  }
  if (!["http", "https", "mailto"].includes(proto)) {
    throw core(
      `URI "${uri}" does not have an allowable protocol. Configure protocols in \`uri.allowed-protocols\`. ` +
        "Allowed protocols are: http, https, mailto.",
    );
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    // Far above any real message; stops a runaway test from eating memory.
    if (size > 16 * 1024 * 1024) throw new Error("request body too large");
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString("utf8");
}
