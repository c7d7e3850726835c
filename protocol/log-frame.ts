import type { JobLogMessage } from "./messages.js";
import type { ParseResult } from "./parse.js";

/**
 * `job.log` travels as a binary frame, so log bytes cross the wire as they are (no base64, no
 * JSON string of the whole chunk):
 *
 *   byte 0        frame kind, LOG_FRAME_KIND
 *   bytes 1..4    header length H, unsigned 32-bit big-endian
 *   bytes 5..5+H  header: ASCII JSON {"jobId": string, "offset": number}
 *   the rest      the log bytes, starting at `offset` of the job's log
 */
export const LOG_FRAME_KIND = 1;
const PREFIX = 5;
const MAX_HEADER = 1024;

/** JSON with every non-ASCII character escaped, so the header is plain ASCII. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

export function encodeLogFrame(msg: JobLogMessage): Uint8Array {
  const header = asciiJson({ jobId: msg.jobId, offset: msg.offset });
  const out = new Uint8Array(PREFIX + header.length + msg.data.length);
  out[0] = LOG_FRAME_KIND;
  new DataView(out.buffer).setUint32(1, header.length);
  for (let i = 0; i < header.length; i++) out[PREFIX + i] = header.charCodeAt(i);
  out.set(msg.data, PREFIX + header.length);
  return out;
}

const bad = (error: string): ParseResult<JobLogMessage> => ({ ok: false, code: "bad_frame", error });

/** Parses a binary frame; never throws. The returned data is a view into `bytes`, not a copy. */
export function parseLogFrame(bytes: Uint8Array): ParseResult<JobLogMessage> {
  if (bytes.length < PREFIX) return bad("binary frame too short");
  if (bytes[0] !== LOG_FRAME_KIND) return bad(`unknown binary frame kind ${bytes[0] ?? "?"}`);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
  if (length > MAX_HEADER || PREFIX + length > bytes.length)
    return bad("binary frame header length is out of range");
  let text = "";
  for (let i = PREFIX; i < PREFIX + length; i++) {
    const b = bytes[i] as number;
    if (b >= 0x80) return bad("binary frame header is not ASCII");
    text += String.fromCharCode(b);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return bad("binary frame header is not JSON");
  }
  const h = (typeof header === "object" && header !== null ? header : {}) as Record<string, unknown>;
  const jobId = h["jobId"];
  const offset = h["offset"];
  if (typeof jobId !== "string" || jobId.length === 0 || jobId.length > 128)
    return bad("job.log: jobId: expected a non-empty string");
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0)
    return bad("job.log: offset: expected an integer ≥ 0");
  return { ok: true, message: { type: "job.log", jobId, offset, data: bytes.subarray(PREFIX + length) } };
}
