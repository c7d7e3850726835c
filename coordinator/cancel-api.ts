import type { IncomingMessage, ServerResponse } from "node:http";
import type { CoordinatorConfig } from "./config.js";
import type { JobController } from "./job-controller.js";
import { getJob, type ReadApi } from "./read-api.js";
import { sendJson } from "./respond.js";
import { secretEquals } from "./secret-equals.js";

const MAX_REASON = 500;

/**
 * `POST /api/jobs/:id/cancel` with `Authorization: Bearer <api token>` and an optional `?reason=`.
 * Cancelling a finished job is a no-op that returns it; Harbormaster gets `fail` with the reason.
 */
export function cancelJob(
  req: IncomingMessage,
  res: ServerResponse,
  id: number,
  config: CoordinatorConfig,
  jobs: JobController,
  api: ReadApi,
): void {
  req.resume();
  if (req.method !== "POST") {
    res.setHeader("Allow", "POST");
    return sendJson(res, 405, { error: "use POST" });
  }
  if (config.apiToken === "") {
    return sendJson(res, 403, { error: "write API disabled: start the coordinator with --api-token-file" });
  }
  const auth = req.headers.authorization ?? "";
  if (!secretEquals(auth.startsWith("Bearer ") ? auth.slice(7) : "", config.apiToken)) {
    res.setHeader("WWW-Authenticate", 'Bearer realm="phab-dock-ci"');
    return sendJson(res, 401, { error: "wrong or missing API token" });
  }
  const url = new URL(req.url ?? "/", "http://localhost");
  const reason = (url.searchParams.get("reason") ?? "").slice(0, MAX_REASON) || "cancelled through the API";
  if (!jobs.cancel(id, reason, true)) return sendJson(res, 404, { error: `no job ${id}` });
  getJob(api, res, id);
}
