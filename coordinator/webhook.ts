import type { IncomingMessage, ServerResponse } from "node:http";
import type { CoordinatorConfig } from "./config.js";
import { parseChangeHook, parseHarbormasterHook } from "./intake.js";
import type { IntakeBatcher } from "./intake-batcher.js";
import type { Logger } from "./logger.js";
import { sendJson } from "./respond.js";
import { secretEquals } from "./secret-equals.js";

export const WEBHOOK_PATHS = new Set(["/harbormaster", "/change_hook", "/change_hook/base"]);
const METHODS = new Set(["POST", "PUT", "GET"]);

function credentialsOk(req: IncomingMessage, config: CoordinatorConfig): boolean {
  if (config.webhookUser === "" && config.webhookPassword === "") return true;
  const header = req.headers.authorization ?? "";
  if (!header.startsWith("Basic ")) return false;
  const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return false;
  // Both halves are always compared, so timing does not tell which one was wrong.
  const userOk = secretEquals(decoded.slice(0, colon), config.webhookUser);
  const passOk = secretEquals(decoded.slice(colon + 1), config.webhookPassword);
  return userOk && passOk;
}

/**
 * Harbormaster's "Make HTTP Request" step. Everything is in the query string (the body is empty).
 * Answers 202 with the new job, 200 with the existing job for a known target, 400 listing every
 * problem, 401 for wrong credentials. Harbormaster never retries, so only requests that can never
 * work get a 4xx.
 */
export function handleWebhook(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  config: CoordinatorConfig,
  intake: IntakeBatcher,
  jobUrl: (id: number) => string,
  log: Logger,
): void {
  // The body is never used; drain it so keep-alive connections stay usable.
  req.resume();
  if (!METHODS.has(req.method ?? "")) {
    res.setHeader("Allow", "POST, PUT, GET");
    return sendJson(res, 405, { error: `method ${req.method ?? "?"} is not allowed; use POST, PUT or GET` });
  }
  if (!credentialsOk(req, config)) {
    res.setHeader("WWW-Authenticate", 'Basic realm="phab-dock-ci"');
    return sendJson(res, 401, { error: "wrong or missing webhook credentials" });
  }
  const parsed =
    url.pathname === "/harbormaster"
      ? parseHarbormasterHook(url.searchParams, config.allowedRepositories)
      : parseChangeHook(url.searchParams, config.allowedRepositories);
  if (!parsed.ok) {
    log.warn(`webhook refused: ${parsed.problems.join("; ")}`);
    return sendJson(res, 400, { error: "bad request", problems: parsed.problems });
  }
  intake.submit(parsed.job).then(
    ({ job, created }) => {
      if (created)
        log.info(
          `job ${job.id} queued for ${job.targetPhid} (${job.repositoryUri} ${job.ref || job.commit})`,
        );
      sendJson(res, created ? 202 : 200, {
        jobId: job.id,
        url: jobUrl(job.id),
        state: job.state,
        duplicate: !created,
      });
    },
    (err: unknown) => {
      // Only a failing disk gets here; Harbormaster fails the target, which is honest.
      log.error(`storing a webhook's job failed: ${String(err)}`);
      sendJson(res, 500, { error: "could not store the job" });
    },
  );
}
