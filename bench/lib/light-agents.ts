/**
 * Light agents: bare WebSocket clients that speak just enough of the protocol (hello, heartbeats as
 * often as the welcome dictates with pings as often as the real agent sends them, and
 * accept / log / finished for an offered job), so that one
 * process holds a thousand of them. The coordinator cannot tell them from real agents.
 *
 * Prints `{"ev":"ready","connected":n}` once every client got its welcome; answers `status` on
 * stdin with `{"ev":"status","connected","heartbeats","closed"}`.
 *
 * Environment: BENCH_LIGHT = JSON {url, token, count, prefix, concurrency}.
 */
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { WebSocket } from "ws";
import { IDLE_PING_EVERY } from "../../agent/agent.js";
import { PROTOCOL_VERSION } from "../../protocol/messages.js";
import { TurnCork } from "../../protocol/node/turn-cork.js";
import { encodeLogFrame } from "../../protocol/log-frame.js";

interface Settings {
  url: string;
  token: string;
  count: number;
  prefix: string;
  /** Handshakes in flight at once. */
  concurrency: number;
}

const CONNECT_TIMEOUT_MS = 180_000;
const LOG_TEXT = Buffer.from("instant job\n");
const LOG_SHA = createHash("sha256").update(LOG_TEXT).digest("hex");

const emit = (msg: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(msg)}\n`);

let connected = 0;
let heartbeats = 0;
let closed = 0;
const timers = new Set<NodeJS.Timeout>();
const sockets: WebSocket[] = [];

function client(s: Settings, name: string, welcomed: () => void, failed: () => void): void {
  const ws = new WebSocket(s.url, {
    headers: { Authorization: `Bearer ${s.token}` },
    perMessageDeflate: false,
    handshakeTimeout: 30_000,
  });
  sockets.push(ws);
  const running = new Set<string>();
  let beat: NodeJS.Timeout | null = null;
  let greeted = false;
  // Frames of one turn (a heartbeat and its ping) leave in one TCP write, as the real agent's do.
  const cork = new TurnCork(ws);
  const send = (msg: Record<string, unknown>) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    cork.hold();
    ws.send(JSON.stringify(msg));
  };
  ws.on("open", () =>
    send({
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      name,
      labels: [],
      capacity: 1,
      agentVersion: "bench-light",
      running: [],
    }),
  );
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data)) as Record<string, unknown>;
    const jobId = String(msg["jobId"] ?? "");
    switch (msg["type"]) {
      case "welcome": {
        greeted = true;
        connected += 1;
        welcomed();
        const every = Number(msg["heartbeatIntervalMs"]);
        const idleEvery = Number(msg["idleHeartbeatEvery"] ?? 1);
        // A random start of the count too, so the idle beats spread over the whole idle interval.
        let beats = Math.floor(Math.random() * idleEvery);
        // A random phase spreads the beats of clients that connected together.
        const first = setTimeout(() => {
          timers.delete(first);
          const tick = () => {
            beats += 1;
            // Heartbeats and pings as the real agent sends them: every beat while busy, every few
            // (as the welcome and IDLE_PING_EVERY say) when idle.
            if (running.size > 0 || beats % idleEvery === 0) {
              heartbeats += 1;
              send({ type: "heartbeat", running: [...running] });
            }
            if (ws.readyState === WebSocket.OPEN && (running.size > 0 || beats % IDLE_PING_EVERY === 0))
              ws.ping();
          };
          tick();
          beat = setInterval(tick, every);
          timers.add(beat);
        }, Math.random() * every);
        timers.add(first);
        return;
      }
      case "job.assign":
        running.add(jobId);
        send({ type: "job.accept", jobId });
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(encodeLogFrame({ type: "job.log", jobId, offset: 0, data: LOG_TEXT }), { binary: true });
        }
        return;
      case "log.ack":
        if (running.has(jobId) && Number(msg["offset"]) >= LOG_TEXT.length) {
          send({
            type: "job.finished",
            jobId,
            result: "pass",
            exitCode: 0,
            reason: "",
            totalBytes: LOG_TEXT.length,
            sha256: LOG_SHA,
          });
        }
        return;
      case "finished.ack":
        running.delete(jobId);
        return;
    }
  });
  ws.on("error", () => undefined);
  ws.on("close", () => {
    if (beat) clearInterval(beat);
    if (greeted) closed += 1;
    else failed();
  });
}

async function main(): Promise<void> {
  const s = JSON.parse(process.env["BENCH_LIGHT"] ?? "{}") as Settings;
  let started = 0;
  let inFlight = 0;
  let failures = 0;
  const retry: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(
      () => reject(new Error(`${s.prefix}: only ${connected} of ${s.count} connected`)),
      CONNECT_TIMEOUT_MS,
    );
    const next = () => {
      while (inFlight < s.concurrency && (started < s.count || retry.length > 0)) {
        inFlight += 1;
        const name = retry.shift() ?? `${s.prefix}-${started++}`;
        const welcomed = () => {
          inFlight -= 1;
          if (connected === s.count) {
            clearTimeout(deadline);
            resolve();
          } else next();
        };
        const failed = () => {
          inFlight -= 1;
          // A refused handshake (a full backlog) is tried again, a bounded number of times.
          if (++failures > s.count) return reject(new Error(`${s.prefix}: too many failed connections`));
          retry.push(name);
          setTimeout(next, 50);
        };
        client(s, name, welcomed, failed);
      }
    };
    next();
  });
  emit({ ev: "ready", connected });
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "status") emit({ ev: "status", connected: connected - closed, heartbeats, closed });
  });
  process.on("SIGTERM", () => {
    for (const t of timers) clearTimeout(t);
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  });
}

main().catch((err: unknown) => {
  console.error(`light-agents: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
