import { rm } from "node:fs/promises";
import { join } from "node:path";
import { WebSocket } from "ws";
import { fullJitterDelay } from "../protocol/backoff.js";
import { errorMessage } from "../protocol/errors.js";
import {
  PROTOCOL_VERSION,
  type AgentMessage,
  type CoordinatorMessage,
  type JobAssignMessage,
  type WelcomeMessage,
} from "../protocol/messages.js";
import { encodeLogFrame } from "../protocol/log-frame.js";
import { TurnCork } from "../protocol/node/turn-cork.js";
import { MAX_FRAME_BYTES, parseCoordinatorMessage } from "../protocol/parse.js";
import type { AgentConfig } from "./config.js";
import type { ContainerBackend } from "./container-backend.js";
import type { SourceCheckout } from "./source-checkout.js";
import { ActiveJob } from "./active-job.js";
import { imageRepository, LABEL_AGENT } from "./job-runner.js";
import type { Logger } from "./logger.js";

export const AGENT_VERSION = "0.1.0";
/** Heartbeat intervals without a pong before the socket is considered dead. */
const PONG_MISSES = 3;
/**
 * An idle agent pings once every this many heartbeat intervals (once a minute with the default
 * 10 s), along with its heartbeat (which it sends only every `welcome.idleHeartbeatEvery`
 * intervals): it has no lease to fence, and every ping costs the coordinator a pong (10,000 idle
 * agents would make it write 1,000 a second at every beat). TCP keepalive notices a dead network
 * path in between; the pings catch what keepalive cannot, a peer or middlebox that still answers
 * TCP but passes nothing.
 */
export const IDLE_PING_EVERY = 6;
/** TCP keepalive idle time on the connection to the coordinator. */
const KEEPALIVE_MS = 15_000;
/** How long stop() waits for abandoned jobs to clean up their containers. */
const STOP_WAIT_MS = 15_000;
/** How often the agent checks whether its leases are about to run out. */
const FENCE_CHECK_MS = 200;
/** Time allowed for killing fenced containers before the coordinator's lease runs out. */
const MAX_KILL_BUDGET_MS = 2_000;

/**
 * The agent's side of the protocol: dials the coordinator, says hello, runs offered jobs up to its
 * capacity, and keeps doing so across reconnects (jittered backoff) without losing log bytes or
 * results. See protocol/messages.ts for the contract.
 */
export class Agent {
  private ws: WebSocket | null = null;
  private welcome: WelcomeMessage | null = null;
  private readonly jobs = new Map<string, ActiveJob>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private fenceTimer: NodeJS.Timeout | null = null;
  /** The last welcome's timing, kept across disconnects for fencing. */
  private lastWelcome: WelcomeMessage | null = null;
  /**
   * When contact with the coordinator was last proven: a pong (it got everything sent before the
   * ping, heartbeats included), or a job.assign (the new job's lease starts after it was sent).
   */
  private lastPongAt = 0;
  private beats = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private stopped = false;
  /** Frames of one turn leave in one TCP write (accept and the first phases; a log chunk and a phase). */
  private cork: TurnCork | null = null;
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly config: AgentConfig,
    private readonly git: SourceCheckout,
    private readonly backend: ContainerBackend,
    private readonly log: Logger,
  ) {}

  /** Removes containers and workspaces of an earlier life of this agent, then connects. */
  async start(): Promise<void> {
    const removed = await this.backend.removeLeftovers({ [LABEL_AGENT]: this.config.name });
    const images = await this.backend.removeImagesOf(imageRepository(this.config.name));
    if (removed + images > 0) {
      this.log.info(`removed ${removed} container(s) and ${images} image(s) left by an earlier run`);
    }
    // Nothing runs yet, so every workspace here belongs to a job of an earlier life.
    await rm(join(this.config.workDir, "workspaces"), { recursive: true, force: true });
    await rm(join(this.config.workDir, "spool"), { recursive: true, force: true });
    this.fenceTimer = setInterval(() => this.fence(), FENCE_CHECK_MS);
    this.connect();
  }

  get connected(): boolean {
    return this.welcome !== null && this.ws?.readyState === WebSocket.OPEN;
  }

  get runningJobs(): number {
    return this.jobs.size;
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = new WebSocket(this.config.url, {
      headers: { Authorization: `Bearer ${this.config.token}` },
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    this.cork = new TurnCork(ws);
    ws.on("upgrade", (res) => res.socket.setKeepAlive(true, KEEPALIVE_MS));
    ws.on("open", () => this.hello());
    ws.on("pong", () => (this.lastPongAt = Date.now()));
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const parsed = parseCoordinatorMessage(data.toString());
      if (!parsed.ok) {
        this.log.warn(`bad frame from coordinator: ${parsed.error}`);
        this.send({ type: "error", code: parsed.code, message: parsed.error });
        return;
      }
      try {
        this.handle(parsed.message);
      } catch (err) {
        this.log.error(`handling ${parsed.message.type}: ${errorMessage(err)}`);
      }
    });
    ws.on("unexpected-response", (_req, res) => {
      this.log.error(
        `coordinator refused the connection: HTTP ${res.statusCode ?? "?"}${res.statusCode === 401 ? " (wrong agent token)" : ""}`,
      );
      ws.terminate();
    });
    ws.on("error", (err) => this.log.warn(`connection error: ${err.message}`));
    ws.on("close", (code, reason) => this.closed(ws, code, reason.toString()));
  }

  private hello(): void {
    this.send({
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      name: this.config.name,
      labels: this.config.labels,
      capacity: this.config.capacity,
      agentVersion: AGENT_VERSION,
      running: [...this.jobs.values()].map((j) => ({ jobId: j.id, ackedOffset: j.streamer.acked })),
    });
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = null;
    this.welcome = null;
    for (const job of this.jobs.values()) job.streamer.disconnected();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.stopped) return;
    const delay = fullJitterDelay(this.attempt++, this.config.reconnect);
    this.log.warn(`disconnected (${code}${reason ? ` ${reason}` : ""}); reconnecting in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** Sends a frame when connected; returns false otherwise (callers keep what they must resend). */
  send(msg: AgentMessage): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    if (msg.type !== "hello" && msg.type !== "error" && !this.welcome) return false;
    this.cork?.hold();
    if (msg.type === "job.log") ws.send(encodeLogFrame(msg), { binary: true });
    else ws.send(JSON.stringify(msg));
    return true;
  }

  private handle(msg: CoordinatorMessage): void {
    switch (msg.type) {
      case "welcome":
        return this.welcomed(msg);
      case "job.assign":
        return this.assign(msg);
      case "job.cancel":
        this.jobs.get(msg.jobId)?.cancel(msg.reason, msg.graceMs);
        return;
      case "log.ack":
        this.jobs.get(msg.jobId)?.streamer.ack(msg.offset);
        return;
      case "log.rewind":
        this.jobs.get(msg.jobId)?.streamer.rewind(msg.offset);
        return;
      case "finished.ack":
        return this.finishedAck(msg.jobId);
      case "error":
        this.log.warn(`coordinator says ${msg.code}: ${msg.message}`);
        return;
    }
  }

  private welcomed(msg: WelcomeMessage): void {
    this.welcome = msg;
    this.lastWelcome = msg;
    this.attempt = 0;
    this.log.info(`connected to ${this.config.url} as ${this.config.name}`);
    for (const c of msg.cancel) {
      const job = this.jobs.get(c);
      if (job) {
        this.log.warn(`coordinator no longer expects job ${c}; stopping it`);
        job.abandon();
        this.jobs.delete(c);
      }
    }
    for (const job of this.jobs.values()) {
      job.streamer.configure(this.streamerTiming(msg));
      const resumed = msg.resumed.find((r) => r.jobId === job.id);
      job.resume(resumed ? resumed.ackedOffset : job.streamer.acked);
    }
    this.lastPongAt = Date.now();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(
      () => this.beat(msg.heartbeatIntervalMs, msg.idleHeartbeatEvery),
      msg.heartbeatIntervalMs,
    );
    this.notifyIdle();
  }

  /**
   * Heartbeat (renews our jobs' leases) and a ping, so a half-open socket is noticed and replaced:
   * both at every beat while jobs run (fencing needs fresh pongs); when idle, the heartbeat at every
   * `idleEvery`-th beat and the ping at every IDLE_PING_EVERY-th.
   */
  private beat(intervalMs: number, idleEvery: number): void {
    const now = Date.now();
    const busy = this.jobs.size > 0;
    this.beats += 1;
    if (busy || this.beats % idleEvery === 0)
      this.send({ type: "heartbeat", running: [...this.jobs.keys()] });
    const misses = busy ? PONG_MISSES : PONG_MISSES + IDLE_PING_EVERY;
    if (now - this.lastPongAt > misses * intervalMs) {
      this.log.warn("the coordinator stopped answering pings; reconnecting");
      this.ws?.terminate();
    } else if (busy || this.beats % IDLE_PING_EVERY === 0) {
      this.ws?.ping();
    }
  }

  /**
   * Fencing: the coordinator declares our jobs lost one lease after the last heartbeat it got, and
   * runs them elsewhere. So shortly before we have been cut off that long (leaving time to kill the
   * containers), jobs still running here are stopped, and a job never runs twice at the same time. Jobs that already ended keep their
   * result and report it when the connection returns.
   */
  private fence(): void {
    const welcome = this.lastWelcome;
    if (!welcome) return;
    // A pong proves the coordinator got everything sent before the ping, heartbeats included; it
    // also covers a half-open socket that still looks connected here.
    const killBudget = Math.min(MAX_KILL_BUDGET_MS, welcome.leaseMs / 4);
    const deadline = this.lastPongAt + welcome.leaseMs - welcome.heartbeatIntervalMs - killBudget;
    if (Date.now() < deadline) return;
    for (const job of [...this.jobs.values()]) {
      if (job.ended) continue;
      this.log.warn(
        `job ${job.id}: no contact with the coordinator for a lease; stopping it (it runs elsewhere now)`,
      );
      job.abandon();
      this.jobs.delete(job.id);
    }
    this.notifyIdle();
  }

  private streamerTiming(w: WelcomeMessage) {
    return {
      maxChunkBytes: w.maxChunkBytes,
      maxLogBytes: w.maxLogBytes,
      flushIntervalMs: w.logFlushIntervalMs,
    };
  }

  private assign(msg: JobAssignMessage): void {
    const welcome = this.welcome;
    if (!welcome) return;
    if (this.jobs.has(msg.jobId)) return void this.send({ type: "job.accept", jobId: msg.jobId });
    if (this.draining || this.jobs.size >= this.config.capacity) {
      this.send({
        type: "job.reject",
        jobId: msg.jobId,
        reason: this.draining ? "agent is draining" : "no free slot",
      });
      return;
    }
    const job = new ActiveJob(msg.jobId, msg.spec, {
      agentName: this.config.name,
      workDir: this.config.workDir,
      git: this.git,
      backend: this.backend,
      send: (m) => this.send(m),
      resendEveryMs: welcome.heartbeatIntervalMs,
      streamer: {
        ...this.streamerTiming(welcome),
        memoryBytes: this.config.logMemoryBytes,
        spillBytes: this.config.logSpillBytes,
      },
      spoolDir: join(this.config.workDir, "spool"),
      log: this.log,
    });
    if (this.jobs.size === 0) {
      // Idle, the last pong may be a few beats old. The new job's lease starts only when the
      // coordinator gets our accept, after it sent this offer: counting from now is safe for it,
      // and (with no other job running) for every lease we hold. The next beat pings again.
      this.lastPongAt = Date.now();
    }
    this.jobs.set(msg.jobId, job);
    this.send({ type: "job.accept", jobId: msg.jobId });
    this.log.info(`job ${msg.jobId}: ${msg.spec.repositoryUri} ${msg.spec.ref || msg.spec.commit}`);
    job.run();
  }

  private finishedAck(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job?.acknowledged()) return;
    this.jobs.delete(jobId);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.jobs.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Takes no new jobs and resolves when the running ones are reported. */
  async drain(): Promise<void> {
    this.draining = true;
    if (this.jobs.size === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cancels every running job (they still report `cancelled`). */
  cancelAll(reason: string): void {
    for (const job of this.jobs.values()) job.cancel(reason, 0);
  }

  /**
   * Closes the connection; jobs still running are stopped without a report (after a drain there
   * are none). Resolves when their containers are cleaned up, or after a bounded wait.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.fenceTimer) clearInterval(this.fenceTimer);
    const jobs = [...this.jobs.values()];
    for (const job of jobs) job.abandon();
    this.ws?.close(1000, "agent stopping");
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)));
    await Promise.race([Promise.all(jobs.map((j) => j.settled())), limit]);
    clearTimeout(timer);
  }
}
