/**
 * Preloaded (`node --import`) into a process under test, such as `phab-dock-ci agent`: keeps the
 * peaks of process.memoryUsage() (sampled every 50 ms) and of the largest `bufferedAmount` of any
 * `ws` WebSocket right after a send, i.e. bytes handed to the socket but not yet taken by the
 * kernel. On SIGUSR2 it prints `{"ev":"probe",…}` with those peaks in bytes.
 */
import { createRequire } from "node:module";

interface Peaks {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  wsBuffered: number;
}

const peaks: Peaks = { rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0, wsBuffered: 0 };

function sample(): void {
  const m = process.memoryUsage();
  peaks.rss = Math.max(peaks.rss, m.rss);
  peaks.heapUsed = Math.max(peaks.heapUsed, m.heapUsed);
  peaks.external = Math.max(peaks.external, m.external);
  peaks.arrayBuffers = Math.max(peaks.arrayBuffers, m.arrayBuffers);
}

setInterval(sample, 50).unref();

interface Sendable {
  bufferedAmount: number;
  send: (...args: unknown[]) => unknown;
}

try {
  // The same module instance the program imports: require resolves to the one copy of ws.
  const ws = createRequire(import.meta.url)("ws") as { WebSocket: { prototype: Sendable } };
  const proto = ws.WebSocket.prototype;
  const send = proto.send;
  proto.send = function (this: Sendable, ...args: unknown[]): unknown {
    const result = send.apply(this, args);
    peaks.wsBuffered = Math.max(peaks.wsBuffered, this.bufferedAmount);
    return result;
  };
} catch {
  // no ws in this program: the memory peaks still work
}

process.on("SIGUSR2", () => {
  sample();
  process.stdout.write(`${JSON.stringify({ ev: "probe", ...peaks })}\n`);
});
