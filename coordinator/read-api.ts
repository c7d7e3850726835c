import type { ServerResponse } from "node:http";
import type { Job, JobStore } from "./job-store.js";
import type { LogStore } from "./log-store.js";
import { escapeHtml, sendJson, sendText } from "./respond.js";
import type { Scheduler } from "./scheduler.js";

/** Most log bytes one request returns; the client asks again with `?offset=`. */
const LOG_PAGE_BYTES = 8 * 1024 * 1024;
const LIST_LIMIT = 100;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export interface ReadApi {
  store: JobStore;
  logs: LogStore;
  scheduler: Scheduler;
  jobUrl: (id: number) => string;
  phaseOf: (id: number) => string;
}

function jobJson(api: ReadApi, job: Job) {
  const end = job.finishedAt ?? (job.startedAt !== null ? Date.now() : null);
  const reports = api.store.outboxForJob(job.id).map((m) => ({
    method: m.method,
    type: typeof m.params["type"] === "string" ? m.params["type"] : undefined,
    state: m.state,
    attempts: m.attempts,
    lastError: m.lastError || undefined,
  }));
  return {
    id: job.id,
    url: api.jobUrl(job.id),
    targetPhid: job.targetPhid,
    state: job.state,
    result: job.result,
    reason: job.reason,
    exitCode: job.exitCode,
    phase: api.phaseOf(job.id) || null,
    agent: job.agent,
    attempt: job.attempt,
    labels: job.labels,
    repository: job.repositoryUri,
    ref: job.ref,
    commit: job.commit,
    meta: job.meta,
    createdAt: iso(job.createdAt),
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
    durationMs: job.startedAt !== null && end !== null ? end - job.startedAt : null,
    logBytes: job.state === "finished" ? job.logBytes : api.logs.length(job.id),
    logSha256: job.logSha256 || null,
    reports,
  };
}

export function listJobs(api: ReadApi, res: ServerResponse, url: URL): void {
  const before = Number(url.searchParams.get("before") ?? "");
  const jobs = api.store.listJobs(
    LIST_LIMIT,
    Number.isSafeInteger(before) && before > 0 ? before : undefined,
  );
  sendJson(res, 200, { jobs: jobs.map((j) => jobJson(api, j)) });
}

export function getJob(api: ReadApi, res: ServerResponse, id: number): void {
  const job = api.store.getJob(id);
  if (!job) return sendJson(res, 404, { error: `no job ${id}` });
  sendJson(res, 200, jobJson(api, job));
}

export function getLog(api: ReadApi, res: ServerResponse, id: number, url: URL): void {
  if (!api.store.getJob(id)) return sendJson(res, 404, { error: `no job ${id}` });
  const raw = url.searchParams.get("offset") ?? "0";
  const offset = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : -1;
  if (offset < 0) return sendJson(res, 400, { error: "offset must be a non-negative integer" });
  const length = api.logs.length(id);
  const stream = api.logs.read(id, offset, LOG_PAGE_BYTES);
  const end = Math.min(length, offset + LOG_PAGE_BYTES);
  res.writeHead(200, {
    "Content-Type": "text/plain; charset=utf-8",
    "X-Log-Offset": String(Math.max(end, offset)),
    "X-Log-Length": String(length),
    "Content-Length": String(Math.max(0, end - offset)),
  });
  if (!stream) return void res.end();
  stream.pipe(res);
}

export function listAgents(api: ReadApi, res: ServerResponse): void {
  const agents = api.store.listAgents().map((a) => {
    const live = api.scheduler.sessions.get(a.name);
    return {
      name: a.name,
      labels: a.labels,
      capacity: a.capacity,
      version: a.version,
      connected: live !== undefined,
      runningJobs: live ? [...live.running] : [],
      lastSeen: iso(live ? live.lastSeen : a.lastSeen),
    };
  });
  sendJson(res, 200, { agents });
}

/** The page linked from Harbormaster: state and log; it reloads itself while the job is active. */
export function jobPage(api: ReadApi, res: ServerResponse, id: number): void {
  const job = api.store.getJob(id);
  if (!job) return sendText(res, 404, `no job ${id}\n`);
  const info = jobJson(api, job);
  const rows = Object.entries({
    State: job.state + (info.phase ? ` (${info.phase})` : ""),
    Result: job.result ?? "-",
    Reason: job.reason || "-",
    Target: job.targetPhid,
    Repository: job.repositoryUri,
    Ref: job.ref || job.commit,
    Agent: job.agent ?? "-",
    Created: info.createdAt ?? "-",
    Duration: info.durationMs === null ? "-" : `${(info.durationMs / 1000).toFixed(1)} s`,
  })
    .map(([k, v]) => `<tr><th>${k}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join("");
  const reports =
    info.reports.length === 0
      ? ""
      : `<h2>Reports to Harbormaster</h2><ul>${info.reports
          .map(
            (r) =>
              `<li>${escapeHtml(`${r.method}${r.type ? ` ${r.type}` : ""}: ${r.state}${r.lastError ? ` (${r.lastError})` : ""}`)}</li>`,
          )
          .join("")}</ul>`;
  const refresh = job.state === "finished" ? "" : '<meta http-equiv="refresh" content="3">';
  const stream = api.logs.read(id, 0, LOG_PAGE_BYTES);
  const chunks: Buffer[] = [];
  const render = () => {
    const log = Buffer.concat(chunks).toString("utf8");
    sendText(
      res,
      200,
      `<!doctype html><html><head><meta charset="utf-8">${refresh}<title>Job ${id} · phab-dock-ci</title>
<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}pre{background:#111;color:#ddd;padding:1em;overflow:auto}</style>
</head><body><h1>Job ${id}</h1><table>${rows}</table>${reports}<h2>Log</h2><pre>${escapeHtml(log)}</pre>
<p><a href="/api/jobs/${id}/log">raw log</a> · <a href="/api/jobs/${id}">JSON</a></p></body></html>`,
      "text/html; charset=utf-8",
    );
  };
  if (!stream) return render();
  stream.on("data", (c) => chunks.push(c as Buffer));
  stream.on("end", render);
  stream.on("error", () => sendText(res, 500, "could not read the log\n"));
}
