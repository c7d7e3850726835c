import { Socket } from "node:net";
import type { WebSocket } from "ws";

/**
 * Holds back the frames one side sends to a WebSocket during one turn of the event loop, so they
 * leave in one TCP write: both ends then make one syscall for them instead of one each (an
 * accept and the first phase; a result acknowledgement and the next offer). Used by both sides;
 * protocol/node/ is the part of the protocol that needs Node.
 */
export class TurnCork {
  private corked = false;

  constructor(private readonly ws: WebSocket) {}

  /** Call before sending: corks the socket until the event loop's next check phase. */
  hold(): void {
    if (this.corked) return;
    // ws keeps its socket private; without one (a test double) frames simply go out one by one.
    const socket: unknown = Reflect.get(this.ws, "_socket");
    if (!(socket instanceof Socket)) return;
    this.corked = true;
    socket.cork();
    setImmediate(() => {
      this.corked = false;
      socket.uncork();
    });
  }
}
