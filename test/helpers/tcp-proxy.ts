import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A loopback TCP proxy that a test can cut and restore, to break a real connection the way a
 * network does (both directions gone, no close handshake).
 */
export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private down = false;
  /** Connections let through so far. */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | null = null;
    const server = createServer((client) => {
      if (!proxy || proxy.down) return void client.destroy();
      proxy.accepted += 1;
      const upstream = connect(targetPort, "127.0.0.1");
      proxy.upstreams.add(upstream);
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on("close", () => proxy?.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    proxy = new TcpProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  /**
   * Refuses new connections until `restore` and breaks the open ones, starting from one side:
   * "server" resets the coordinator's end first, "agent" the agent's (the other end follows).
   */
  cut(first: "server" | "agent" | "both" = "both"): void {
    this.down = true;
    const order = [...this.sockets].sort((a, b) => Number(this.isUpstream(b)) - Number(this.isUpstream(a)));
    if (first === "agent") order.reverse();
    for (const s of order) if (first === "both" || this.isUpstream(s) === (first === "server")) s.destroy();
    if (first === "both") this.sockets.clear();
  }

  /**
   * Silences the open connections without closing them (a dead NAT mapping, a hung peer): bytes
   * stop flowing both ways and nobody hears of it. New connections work.
   */
  freeze(): void {
    for (const s of this.sockets) {
      s.unpipe();
      s.pause();
    }
  }

  private readonly upstreams = new WeakSet<Socket>();

  private isUpstream(s: Socket): boolean {
    return this.upstreams.has(s);
  }

  restore(): void {
    this.down = false;
  }

  /** Stops listening, so new connections are refused (ECONNREFUSED), and cuts the open ones. */
  async refuse(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Listens again on the same port after `refuse`. */
  async accept(): Promise<void> {
    this.down = false;
    await new Promise<void>((resolve) => this.server.listen(this.port, "127.0.0.1", resolve));
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
