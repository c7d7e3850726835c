import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { CoordinatorConfig } from "./config.js";
import { AbortWatcher } from "./abort-watcher.js";
import { cancelJob } from "./cancel-api.js";
import { ConduitClient } from "./conduit-client.js";
import { Hub } from "./hub.js";
import { IntakeBatcher } from "./intake-batcher.js";
import { JobController } from "./job-controller.js";
import type { JobStore } from "./job-store.js";
import { LogStore } from "./log-store.js";
import type { Logger } from "./logger.js";
import { getJob, getLog, jobPage, listAgents, listJobs, type ReadApi } from "./read-api.js";
import { Reporter } from "./reporter.js";
import { sendJson } from "./respond.js";
import { Scheduler } from "./scheduler.js";
import { SqliteJobStore } from "./sqlite-job-store.js";
import { handleWebhook, WEBHOOK_PATHS } from "./webhook.js";

export interface RunningCoordinator {
  /** Base HTTP URL the server listens on, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  readonly port: number;
  readonly store: JobStore;
  close(): Promise<void>;
}

const CANCEL_PATH = /^\/api\/jobs\/([0-9]{1,15})\/cancel$/;
const JOB_PATH = /^\/(?:api\/)?jobs\/([0-9]{1,15})(\/log)?$/;

/** Starts the coordinator: store, log store, scheduler, reporter, hub and HTTP server. */
export async function startCoordinator(config: CoordinatorConfig, log: Logger): Promise<RunningCoordinator> {
  mkdirSync(config.dataDir, { recursive: true });
  const store = new SqliteJobStore(join(config.dataDir, "phab-dock-ci.sqlite"));
  const logs = new LogStore(join(config.dataDir, "logs"), config.timing.maxLogBytes, store);
  const scheduler = new Scheduler(store, config, log);
  const conduit = config.conduit
    ? new ConduitClient({
        baseUrl: config.conduit.url,
        token: config.conduit.token,
        timeoutMs: config.conduit.timeoutMs,
      })
    : null;
  const reporter = new Reporter(store, conduit, config.conduit, config.publicUrl, log);
  const jobs = new JobController(store, logs, scheduler, reporter, config, log);
  const watcher = conduit
    ? new AbortWatcher(
        conduit,
        store,
        config.pollIntervalMs,
        (id, reason) => jobs.cancel(id, reason, false),
        log,
      )
    : null;
  const hub = new Hub(config, store, scheduler, jobs, log);
  const intake = new IntakeBatcher(store, () => scheduler.kick());
  const api: ReadApi = {
    store,
    logs,
    scheduler,
    jobUrl: (id) => reporter.jobUrl(id),
    phaseOf: (id) => jobs.phaseOf(id),
  };

  const route = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (WEBHOOK_PATHS.has(url.pathname)) {
      return handleWebhook(req, res, url, config, intake, api.jobUrl, log);
    }
    const cancel = CANCEL_PATH.exec(url.pathname);
    if (cancel) return cancelJob(req, res, Number(cancel[1]), config, jobs, api);
    if (req.method !== "GET" && req.method !== "HEAD")
      return sendJson(res, 405, { error: "method not allowed" });
    if (url.pathname === "/healthz")
      return sendJson(res, 200, { ok: true, agents: scheduler.sessions.size, jobs: store.countByState() });
    if (url.pathname === "/api/jobs") return listJobs(api, res, url);
    if (url.pathname === "/api/agents") return listAgents(api, res);
    const m = JOB_PATH.exec(url.pathname);
    if (m) {
      const id = Number(m[1]);
      if (url.pathname.startsWith("/api/")) return m[2] ? getLog(api, res, id, url) : getJob(api, res, id);
      if (!m[2]) return jobPage(api, res, id);
    }
    sendJson(res, 404, { error: `nothing at ${url.pathname}` });
  };

  const server: Server = createServer((req, res) => {
    try {
      route(req, res);
    } catch (err) {
      log.error(`${req.method ?? "?"} ${req.url ?? "?"}: ${String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.destroy();
    }
  });
  server.on("upgrade", (req, socket, head) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== "/agent") {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    hub.handleUpgrade(req, socket, head);
  });

  jobs.start();
  reporter.start();
  watcher?.start();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  if (config.publicUrl === "") reporter.setPublicUrl(url);
  log.info(`listening on ${url}; webhook ${reporter.jobUrl(0).replace(/\/jobs\/0$/, "")}/harbormaster`);
  scheduler.kick();

  let closed = false;
  return {
    url,
    port,
    store,
    async close() {
      if (closed) return;
      closed = true;
      scheduler.stop();
      jobs.stop();
      // No new connections (reconnecting agents go elsewhere or wait), then goodbyes to agents.
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.close();
      server.closeAllConnections();
      await serverClosed;
      await watcher?.stop();
      await reporter.stop();
      logs.closeAll();
      store.close();
    },
  };
}
