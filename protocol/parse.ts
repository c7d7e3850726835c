import { FieldReader, isRecord } from "./fields.js";
import type {
  AgentMessage,
  CoordinatorMessage,
  JobLimits,
  JobLogMessage,
  JobSpec,
  RunningJob,
} from "./messages.js";

/** Largest frame either side accepts, in bytes of JSON text. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;
const MAX_ID = 128;

export type ParseResult<T> = { ok: true; message: T } | { ok: false; code: string; error: string };

type Reader<T> = (r: FieldReader) => T;

function parseWith<T extends { type: string }>(
  text: string,
  readers: Record<string, Reader<T>>,
): ParseResult<T> {
  if (text.length > MAX_FRAME_BYTES) return { ok: false, code: "frame_too_large", error: "frame too large" };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: "bad_json", error: "frame is not valid JSON" };
  }
  if (!isRecord(raw)) return { ok: false, code: "bad_frame", error: "frame is not a JSON object" };
  const type = raw["type"];
  const reader = typeof type === "string" && Object.hasOwn(readers, type) ? readers[type] : undefined;
  if (!reader) {
    const shown = typeof type === "string" ? JSON.stringify(type.slice(0, 64)) : "missing";
    return { ok: false, code: "unknown_type", error: `unknown message type ${shown}` };
  }
  const fields = new FieldReader(raw);
  const message = reader(fields);
  if (fields.problems.length > 0) {
    return { ok: false, code: "bad_message", error: `${String(type)}: ${fields.problems.join("; ")}` };
  }
  return { ok: true, message };
}

const runningJob = (r: FieldReader): RunningJob => ({
  jobId: r.string("jobId", { max: MAX_ID }),
  ackedOffset: r.int("ackedOffset"),
});

const errorMessage = (r: FieldReader) => ({
  type: "error" as const,
  code: r.string("code", { max: 64 }),
  message: r.string("message", { max: 4096, allowEmpty: true }),
});

/** JSON text frames an agent may send: every message but job.log, which is binary. */
const agentReaders: Record<string, Reader<Exclude<AgentMessage, JobLogMessage>>> = {
  hello: (r) => ({
    type: "hello",
    protocolVersion: r.int("protocolVersion"),
    name: r.string("name", { max: 128 }),
    labels: r.stringList("labels"),
    capacity: r.int("capacity", 1, 1024),
    agentVersion: r.string("agentVersion", { max: 64, allowEmpty: true }),
    running: r.list("running", 1024, runningJob),
  }),
  heartbeat: (r) => ({ type: "heartbeat", running: r.stringList("running", 1024) }),
  "job.accept": (r) => ({ type: "job.accept", jobId: r.string("jobId", { max: MAX_ID }) }),
  "job.reject": (r) => ({
    type: "job.reject",
    jobId: r.string("jobId", { max: MAX_ID }),
    reason: r.string("reason", { allowEmpty: true }),
  }),
  "job.phase": (r) => ({
    type: "job.phase",
    jobId: r.string("jobId", { max: MAX_ID }),
    phase: r.oneOf("phase", ["fetching", "building", "running", "pushing", "cleaning"] as const),
  }),
  "job.finished": (r) => ({
    type: "job.finished",
    jobId: r.string("jobId", { max: MAX_ID }),
    result: r.oneOf("result", ["pass", "fail", "cancelled"] as const),
    exitCode: r.intOrNull("exitCode"),
    reason: r.string("reason", { allowEmpty: true }),
    totalBytes: r.int("totalBytes"),
    sha256: r.string("sha256", { max: 64 }),
  }),
  error: errorMessage,
};

const limits = (r: FieldReader): JobLimits => ({
  memoryBytes: r.int("memoryBytes"),
  nanoCpus: r.int("nanoCpus"),
  pidsLimit: r.int("pidsLimit"),
});

const jobSpec = (r: FieldReader): JobSpec => ({
  repositoryUri: r.string("repositoryUri", { max: 2048 }),
  ref: r.string("ref", { max: 1024, allowEmpty: true }),
  commit: r.string("commit", { max: 64, allowEmpty: true }),
  timeoutMs: r.int("timeoutMs", 1),
  cancelGraceMs: r.int("cancelGraceMs"),
  limits: r.object("limits", limits),
  pushTag: r.string("pushTag", { max: 512, allowEmpty: true }),
});

const coordinatorReaders: Record<string, Reader<CoordinatorMessage>> = {
  welcome: (r) => ({
    type: "welcome",
    protocolVersion: r.int("protocolVersion"),
    heartbeatIntervalMs: r.int("heartbeatIntervalMs", 1),
    idleHeartbeatEvery: r.optionalInt("idleHeartbeatEvery", 1, 1, 1000),
    leaseMs: r.int("leaseMs", 1),
    offerTimeoutMs: r.int("offerTimeoutMs", 1),
    logFlushIntervalMs: r.int("logFlushIntervalMs", 1),
    maxChunkBytes: r.int("maxChunkBytes", 1),
    maxLogBytes: r.int("maxLogBytes", 1),
    resumed: r.list("resumed", 1024, runningJob),
    cancel: r.stringList("cancel", 1024),
  }),
  "job.assign": (r) => ({
    type: "job.assign",
    jobId: r.string("jobId", { max: MAX_ID }),
    spec: r.object("spec", jobSpec),
  }),
  "job.cancel": (r) => ({
    type: "job.cancel",
    jobId: r.string("jobId", { max: MAX_ID }),
    reason: r.string("reason", { allowEmpty: true }),
    graceMs: r.int("graceMs"),
  }),
  "log.ack": (r) => ({ type: "log.ack", jobId: r.string("jobId", { max: MAX_ID }), offset: r.int("offset") }),
  "log.rewind": (r) => ({
    type: "log.rewind",
    jobId: r.string("jobId", { max: MAX_ID }),
    offset: r.int("offset"),
  }),
  "finished.ack": (r) => ({ type: "finished.ack", jobId: r.string("jobId", { max: MAX_ID }) }),
  error: errorMessage,
};

/** Parses a text frame an agent sent. Never throws. */
export function parseAgentMessage(text: string): ParseResult<Exclude<AgentMessage, JobLogMessage>> {
  return parseWith(text, agentReaders);
}

/** Parses a frame a coordinator sent. Never throws. */
export function parseCoordinatorMessage(text: string): ParseResult<CoordinatorMessage> {
  return parseWith(text, coordinatorReaders);
}
