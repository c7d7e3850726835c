/**
 * A Conduit endpoint that accepts every call at once and remembers only when each target got its
 * final message: for the benchmarks that push thousands of jobs through the outbox, where the
 * faithful fake (test/helpers/fake-conduit.ts) would spend its time on bookkeeping.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export const SINK_TOKEN = "api-benchbenchbenchbenchbenchbenc";

const EMPTY_PAGE = {
  data: [],
  maps: {},
  query: { queryKey: null },
  cursor: { limit: 100, after: null, before: null, order: null },
};

export class ConduitSink {
  /** Monotonic time (ns) of the pass/fail message per target. */
  readonly finals = new Map<string, bigint>();
  readonly calls = new Map<string, number>();
  private waiters: Array<{ pred: () => boolean; done: () => void }> = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<ConduitSink> {
    let sink: ConduitSink | null = null;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const method = decodeURIComponent((req.url ?? "").replace(/^\/api\//, "").replace(/\?.*$/, ""));
        const result = sink?.record(method, Buffer.concat(chunks).toString("utf8")) ?? null;
        const body = JSON.stringify({ result, error_code: null, error_info: null });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    sink = new ConduitSink(server, `http://127.0.0.1:${port}`);
    const s = sink;
    server.on("connection", (socket: Socket) => {
      s.sockets.add(socket);
      socket.on("close", () => s.sockets.delete(socket));
    });
    return sink;
  }

  private record(method: string, body: string): unknown {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    if (method.endsWith(".search")) return EMPTY_PAGE;
    if (method === "harbormaster.createartifact") return { data: [{ phid: "PHID-HMBA-bench" }] };
    if (method === "harbormaster.sendmessage") {
      const raw = new URLSearchParams(body).get("params") ?? "{}";
      const params = JSON.parse(raw) as { receiver?: unknown; type?: unknown };
      if ((params.type === "pass" || params.type === "fail") && typeof params.receiver === "string") {
        this.finals.set(params.receiver, process.hrtime.bigint());
        this.check();
      }
    }
    return null;
  }

  private check(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.pred()) w.done();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Resolves true once `pred` holds (checked after each final message), false after `timeoutMs`. */
  until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = {
        pred,
        done: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.waiters.push(waiter);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
