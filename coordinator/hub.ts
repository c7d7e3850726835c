import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { CLOSE_POLICY_VIOLATION, PROTOCOL_VERSION, type HelloMessage } from "../protocol/messages.js";
import { parseLogFrame } from "../protocol/log-frame.js";
import { MAX_FRAME_BYTES, parseAgentMessage } from "../protocol/parse.js";
import { AgentSession } from "./agent-session.js";
import type { CoordinatorConfig } from "./config.js";
import type { JobController } from "./job-controller.js";
import type { JobStore } from "./job-store.js";
import type { Logger } from "./logger.js";
import type { Scheduler } from "./scheduler.js";
import { secretEquals } from "./secret-equals.js";

/** The frame an idle agent sends every interval: known by heart, so thousands of agents cost little. */
const IDLE_HEARTBEAT = '{"type":"heartbeat","running":[]}';

const IDLE_HEARTBEAT_BYTES = Buffer.from(IDLE_HEARTBEAT);
/** One shared, frozen result for every idle heartbeat: nothing reads it but the heartbeat handler. */
const IDLE_HEARTBEAT_PARSED: ReturnType<typeof parseAgentMessage> = Object.freeze({
  ok: true,
  message: Object.freeze({ type: "heartbeat", running: Object.freeze([]) as unknown as string[] }),
});

function parseText(data: Buffer | ArrayBuffer | Buffer[]): ReturnType<typeof parseAgentMessage> {
  if (
    Buffer.isBuffer(data) &&
    data.length === IDLE_HEARTBEAT_BYTES.length &&
    data.equals(IDLE_HEARTBEAT_BYTES)
  ) {
    return IDLE_HEARTBEAT_PARSED;
  }
  return parseAgentMessage(data.toString());
}

function asBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

/** Bad frames tolerated per connection before it is closed with 1008. */
const MAX_BAD_FRAMES = 5;
const HELLO_TIMEOUT_MS = 10_000;
/** How long shutdown waits for agents to answer the close handshake. */
const CLOSE_GRACE_MS = 1_000;
/** Close code telling an agent that a newer connection under its name took over. */
const CLOSE_REPLACED = 4000;

/**
 * The WebSocket side of the coordinator: authenticates the upgrade, runs the hello/welcome
 * handshake, and hands every parsed frame to the job controller.
 */
export class Hub {
  // Text frames are parsed as JSON right away, which copes with any bytes; ws's own UTF-8 check
  // would only spend CPU on every heartbeat.
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    skipUTF8Validation: true,
  });
  private silenceTimer: NodeJS.Timeout | null = null;
  /** After close, late socket events must not touch the (closed) store. */
  private closed = false;

  constructor(
    private readonly config: CoordinatorConfig,
    private readonly store: JobStore,
    private readonly scheduler: Scheduler,
    private readonly jobs: JobController,
    private readonly log: Logger,
  ) {
    const every = Math.max(10, config.timing.heartbeatIntervalMs);
    // An agent silent for a whole lease is a half-open socket: drop it so it can reconnect.
    this.silenceTimer = setInterval(() => this.dropSilent(), every);
    this.silenceTimer.unref();
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) return void socket.destroy();
    const auth = req.headers.authorization ?? "";
    const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
    if (!secretEquals(token, this.config.agentToken)) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws));
  }

  private connected(ws: WebSocket): void {
    let session: AgentSession | null = null;
    let badFrames = 0;
    const helloTimer = setTimeout(() => {
      if (!session) ws.close(CLOSE_POLICY_VIOLATION, "no hello");
    }, HELLO_TIMEOUT_MS);
    const refuse = (code: string, message: string) => {
      ws.send(JSON.stringify({ type: "error", code, message }));
      if (++badFrames >= MAX_BAD_FRAMES) ws.close(CLOSE_POLICY_VIOLATION, "too many bad frames");
    };
    ws.on("message", (data, isBinary) => {
      if (this.closed) return;
      // Binary frames carry job.log (see protocol/log-frame.ts); everything else is JSON text.
      const parsed = isBinary ? parseLogFrame(asBytes(data)) : parseText(data);
      if (!parsed.ok) return refuse(parsed.code, parsed.error);
      if (session) {
        session.lastSeen = Date.now();
        try {
          this.jobs.handle(session, parsed.message);
        } catch (err) {
          this.log.error(`handling ${parsed.message.type} from ${session.name}: ${String(err)}`);
          session.send({
            type: "error",
            code: "internal",
            message: "the coordinator could not handle that message",
          });
        }
        return;
      }
      if (parsed.message.type !== "hello") return refuse("hello_first", "the first message must be hello");
      if (isBinary) return;
      clearTimeout(helloTimer);
      session = this.hello(ws, parsed.message);
    });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (session && !this.closed) this.gone(session);
    });
    ws.on("error", (err) => this.log.warn(`agent socket error: ${err.message}`));
  }

  private hello(ws: WebSocket, hello: HelloMessage): AgentSession | null {
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      const message = `protocol version mismatch: agent speaks ${hello.protocolVersion}, coordinator speaks ${PROTOCOL_VERSION}; upgrade the older side`;
      ws.send(JSON.stringify({ type: "error", code: "protocol_version", message }));
      ws.close(CLOSE_POLICY_VIOLATION, "protocol version mismatch");
      this.log.warn(`agent ${hello.name}: ${message}`);
      return null;
    }
    const previous = this.scheduler.sessions.get(hello.name);
    if (previous) {
      this.log.warn(`agent ${hello.name} connected again; closing its previous connection`);
      this.scheduler.sessions.delete(hello.name);
      previous.close(CLOSE_REPLACED, "replaced by a newer connection");
      this.jobs.disconnected(previous);
    }
    const session = new AgentSession(hello.name, hello.labels, hello.capacity, hello.agentVersion, ws);
    const now = Date.now();
    this.store.upsertAgent({
      name: hello.name,
      labels: hello.labels,
      capacity: hello.capacity,
      version: hello.agentVersion,
      connected: true,
      lastSeen: now,
    });
    const { resumed, cancel } = this.jobs.resume(session, hello.running);
    const t = this.config.timing;
    session.send({
      type: "welcome",
      protocolVersion: PROTOCOL_VERSION,
      heartbeatIntervalMs: t.heartbeatIntervalMs,
      idleHeartbeatEvery: t.idleHeartbeatEvery,
      leaseMs: t.leaseMs,
      offerTimeoutMs: t.offerTimeoutMs,
      logFlushIntervalMs: t.logFlushIntervalMs,
      maxChunkBytes: t.maxChunkBytes,
      maxLogBytes: t.maxLogBytes,
      resumed,
      cancel,
    });
    this.scheduler.sessions.set(hello.name, session);
    this.log.info(
      `agent ${hello.name} connected (capacity ${hello.capacity}, labels ${hello.labels.join(",") || "-"}, resumed ${resumed.length})`,
    );
    this.scheduler.kick();
    return session;
  }

  private gone(session: AgentSession): void {
    session.closed = true;
    if (this.scheduler.sessions.get(session.name) !== session) return;
    this.scheduler.sessions.delete(session.name);
    this.store.setAgentConnected(session.name, false, Date.now());
    this.jobs.disconnected(session);
    this.log.info(`agent ${session.name} disconnected`);
  }

  private dropSilent(): void {
    const t = this.config.timing;
    const now = Date.now();
    for (const s of this.scheduler.sessions.values()) {
      // An idle agent beats less often: the same margin of lost beats is that many leases.
      const idle = s.running.size === 0 && s.offers.size === 0;
      const silence = idle ? t.leaseMs * t.idleHeartbeatEvery : t.leaseMs;
      if (s.lastSeen < now - silence) {
        this.log.warn(`agent ${s.name} silent for ${silence / 1000} s; dropping its connection`);
        s.terminate();
      }
    }
  }

  /**
   * Says goodbye to every agent (close 1001: they reconnect to the next coordinator) and waits a
   * moment for the close handshakes; a connection gone silent gets no longer than that.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    for (const s of this.scheduler.sessions.values()) s.close(1001, "coordinator shutting down");
    for (const ws of this.wss.clients) ws.close(1001, "coordinator shutting down");
    for (let i = 0; i < CLOSE_GRACE_MS / 10 && this.wss.clients.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
