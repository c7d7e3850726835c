import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { Agent, request } from "undici";
import { PdciError, errorMessage } from "../protocol/errors.js";

const gunzipAsync = promisify(gunzip);

export interface ConduitClientOptions {
  /** Phorge/Phabricator root, e.g. `https://phab.example.com` or `https://example.com/phorge/`. */
  baseUrl: string;
  /** A bot user's `api-` token. Never appears in an error message. */
  token: string;
  /** Bound for one whole call: connect, headers and body. */
  timeoutMs: number;
}

/**
 * Refusals a person can fix without the request changing (a revoked or mistyped token). Retrying
 * them blindly only hammers Phabricator; the reporter parks them until the coordinator restarts
 * (with a fixed token) instead.
 */
const AUTH_REFUSALS: ReadonlySet<string> = new Set(["ERR-INVALID-AUTH", "ERR-INVALID-SESSION"]);

/**
 * `conduit_transport`: no usable answer (network error, timeout, non-200, unparsable body);
 * Phorge or a proxy is unwell, so retrying is right. `conduit_refused`: Conduit answered with an
 * `error_code`; `conduitCode` holds it and `info` the (redacted) `error_info`.
 */
export class ConduitError extends PdciError {
  readonly conduitCode: string | null;
  readonly info: string | null;
  readonly retryable: boolean;

  constructor(
    code: "conduit_transport" | "conduit_refused",
    message: string,
    opts: { conduitCode?: string; info?: string; cause?: unknown } = {},
  ) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "ConduitError";
    this.conduitCode = opts.conduitCode ?? null;
    this.info = opts.info ?? null;
    this.retryable = code === "conduit_transport";
  }
}

/** Conduit refused our token: the operator must fix it; the request itself was fine. */
export function isAuthRefusal(err: unknown): boolean {
  return err instanceof ConduitError && err.conduitCode !== null && AUTH_REFUSALS.has(err.conduitCode);
}

/** The one retry decision for Conduit calls; anything that is not a ConduitError is a bug, not weather. */
export function isRetryable(err: unknown): boolean {
  return err instanceof ConduitError && err.retryable;
}

/**
 * Phorge reports a second artifact with the same key on a target as a raw MySQL error under
 * ERR-CONDUIT-CORE (`#1062: Duplicate entry '…' for key 'key_artifact'`): the artifact is already there.
 */
export function isDuplicateArtifact(err: unknown): boolean {
  return (
    err instanceof ConduitError &&
    err.conduitCode === "ERR-CONDUIT-CORE" &&
    err.info !== null &&
    err.info.includes("#1062: Duplicate entry") &&
    err.info.includes("key_artifact")
  );
}

// Conduit tokens are a 4-letter-ish prefix and 28 more characters. `{28,}` so that an over-long
// token-looking string is hidden entirely rather than leaking its tail.
const TOKEN_LIKE = /(?:api|cli|clr)-[A-Za-z0-9]{28,}/g;

/** Hide `secret` and anything shaped like a Conduit token; Conduit echoes tokens in error_info. */
export function redactSecret(text: string, secret: string): string {
  const withoutSecret = secret === "" ? text : text.split(secret).join("api-[redacted]");
  return withoutSecret.replace(TOKEN_LIKE, "api-[redacted]");
}

interface RawAnswer {
  status: number;
  encoding: string;
  bytes: Buffer;
}

const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

export class ConduitClient {
  private readonly root: URL;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly agent: Agent;
  private closing: Promise<void> | null = null;

  constructor(opts: ConduitClientOptions) {
    let root: URL;
    try {
      root = new URL(opts.baseUrl);
    } catch (err) {
      throw new PdciError("conduit_config", `Conduit base URL is not a URL: ${opts.baseUrl}`, { cause: err });
    }
    if (root.protocol !== "http:" && root.protocol !== "https:") {
      throw new PdciError("conduit_config", `Conduit base URL must be http or https: ${opts.baseUrl}`);
    }
    // Keep a path prefix (Phorge below /phorge/) and resolve `api/<method>` relative to it.
    root.search = "";
    root.hash = "";
    if (!root.pathname.endsWith("/")) root.pathname += "/";
    this.root = root;
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs;
    // A private dispatcher: close() then releases exactly our sockets, not the process-global pool.
    this.agent = new Agent({
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: opts.timeoutMs,
    });
  }

  /**
   * Call a Conduit method the way arcanist does: every parameter inside one `params` JSON (the only
   * encoding that keeps numbers and booleans typed), the token inside it as `__conduit__.token`.
   * Resolves to `result`; rejects with a ConduitError.
   */
  async call(method: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.closing !== null) throw new PdciError("conduit_closed", `Conduit client is closed (${method})`);
    const url = new URL(`api/${encodeURIComponent(method)}`, this.root);
    const body = new URLSearchParams({
      params: JSON.stringify({ ...params, __conduit__: { token: this.token } }),
      output: "json",
      __conduit__: "1",
    }).toString();

    const raw = await this.post(method, url, body);
    const text = await this.decode(method, raw);
    if (raw.status !== 200) {
      // Phorge answers everything with 200; anything else came from a proxy or a crashed PHP.
      throw this.transport(method, `HTTP ${raw.status}${snippet(text)}`);
    }
    const envelope = parseEnvelope(text);
    if (envelope === null) throw this.transport(method, `answer is not a Conduit response${snippet(text)}`);
    if (envelope.error_code === null) return envelope.result;

    const code = String(envelope.error_code);
    const info = this.redact(typeof envelope.error_info === "string" ? envelope.error_info : "");
    throw new ConduitError("conduit_refused", `Conduit ${method} refused: ${code}: ${info}`, {
      conduitCode: code,
      info,
    });
  }

  async close(): Promise<void> {
    // Shutdown must not wait for a hanging Phabricator; what was in flight stays in the outbox.
    this.closing ??= this.agent.destroy();
    await this.closing;
  }

  private async post(method: string, url: URL, body: string): Promise<RawAnswer> {
    // The per-request timeouts catch a silent server; the signal bounds the call as a whole.
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const res = await request(url, {
        method: "POST",
        dispatcher: this.agent,
        signal,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "accept-encoding": "gzip",
          "user-agent": "phab-dock-ci",
        },
        body,
      });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      const enc = res.headers["content-encoding"];
      return { status: res.statusCode, encoding: String(enc ?? "").toLowerCase(), bytes };
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (signal.aborted || (typeof code === "string" && TIMEOUT_CODES.has(code))) {
        throw this.transport(method, `no answer within ${this.timeoutMs} ms`, err);
      }
      // Node's connection errors can be an AggregateError with an empty message: keep the code.
      const detail = [typeof code === "string" ? code : "", errorMessage(err)]
        .filter((s) => s !== "")
        .join(": ");
      throw this.transport(method, detail || "request failed", err);
    }
  }

  /** undici's `request` does not decompress, and Phorge gzips whenever the client allows it. */
  private async decode(method: string, raw: RawAnswer): Promise<string> {
    if (!raw.encoding.includes("gzip")) return raw.bytes.toString("utf8");
    try {
      return (await gunzipAsync(raw.bytes)).toString("utf8");
    } catch (err) {
      throw this.transport(method, `HTTP ${raw.status} with a gzip body that does not decode`, err);
    }
  }

  private transport(method: string, detail: string, cause?: unknown): ConduitError {
    return new ConduitError("conduit_transport", `Conduit ${method} failed: ${this.redact(detail)}`, {
      cause,
    });
  }

  private redact(text: string): string {
    return redactSecret(text, this.token);
  }
}

interface Envelope {
  result: unknown;
  error_code: unknown;
  error_info: unknown;
}

function parseEnvelope(text: string): Envelope | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || !("error_code" in parsed)) return null;
  const env = parsed as Envelope;
  if (env.error_code !== null && typeof env.error_code !== "string") return null;
  return env;
}

/** A short, single-line excerpt of an unexpected body (a proxy's error page) for the log. */
function snippet(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  if (flat === "") return "";
  return `: ${flat.length > 160 ? `${flat.slice(0, 160)}…` : flat}`;
}
