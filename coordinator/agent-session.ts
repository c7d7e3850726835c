import type { WebSocket } from "ws";
import type { CoordinatorMessage } from "../protocol/messages.js";
import { TurnCork } from "../protocol/node/turn-cork.js";

/** One connected agent as the coordinator sees it: its socket and the jobs it holds. */
export class AgentSession {
  /** Jobs the agent accepted and runs. */
  readonly running = new Set<number>();
  /** Jobs offered with job.assign and not yet answered, with their offer timers. */
  readonly offers = new Map<number, NodeJS.Timeout>();
  readonly labels: ReadonlySet<string>;
  lastSeen = Date.now();
  closed = false;
  /** Frames of one turn leave in one TCP write (a result's acknowledgement and the next offer). */
  private readonly cork: TurnCork;

  constructor(
    readonly name: string,
    labels: string[],
    readonly capacity: number,
    readonly version: string,
    private readonly socket: WebSocket,
  ) {
    this.labels = new Set(labels);
    this.cork = new TurnCork(socket);
  }

  freeSlots(): number {
    return this.capacity - this.running.size - this.offers.size;
  }

  /** True when the agent has every label the job asks for. */
  matches(jobLabels: string[]): boolean {
    return jobLabels.every((l) => this.labels.has(l));
  }

  send(msg: CoordinatorMessage): void {
    if (this.closed) return;
    this.cork.hold();
    this.socket.send(JSON.stringify(msg));
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.offers.values()) clearTimeout(timer);
    this.socket.close(code, reason);
  }

  /** Drops a socket that stopped answering without a close handshake. */
  terminate(): void {
    this.closed = true;
    for (const timer of this.offers.values()) clearTimeout(timer);
    this.socket.terminate();
  }
}
